// Lua 5.4 for Sluice's user functions, with what Swift cannot reach through macros and what must
// stay in C: the allocator with a memory cap, the instruction-budget hook (it raises a Lua error,
// which unwinds with longjmp and so must not cross Swift frames) and the sandbox's library setup.
#include <lua.h>
#include <lualib.h>
#include <lauxlib.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/// Fills a lazy message table (see "Lazy message tables" below) at stack index `table`; Swift code
/// that must call only Lua functions that cannot raise, and must leave the stack as it found it.
typedef void (*sluice_lua_materializer)(lua_State *L, int table, void *context);

/// Reads one field (the string key at `key`) of a lazy message table at `table` without filling the
/// rest: pushes its value (nil when absent) and returns 1, or returns -1 when it cannot, and then
/// the table is filled. Same rules as the materializer.
typedef int (*sluice_lua_field_reader)(lua_State *L, int table, int key, void *context);

typedef struct sluice_lua_budget {
    size_t used;
    size_t limit;
    /// The cap applies only while user code runs, so that Sluice's own pushes never fail.
    int enforce;
    long long instructions;
    /// What is left of this call's budget for library functions that loop in C (see patterns.h).
    long long steps;
    int exhausted;
    /// Fills lazy message tables; NULL leaves them empty.
    sluice_lua_materializer materialize;
    /// Reads single fields of lazy message tables; NULL fills them whole on first touch.
    sluice_lua_field_reader read_field;
    void *materialize_context;
    /// Freed small blocks by size class (16 bytes each, up to 256), reused before malloc is asked.
    void *small_blocks[17];
    size_t pooled;
} sluice_lua_budget;

// Every call makes a few tables and strings that die young; glibc's malloc paid for them with
// consolidation and bin work on the replication thread (profile of a routing function). Blocks up
// to 256 bytes are kept per state in free lists by size class instead, at most 1 MB of them; the
// memory cap counts what Lua asked for, as before.
enum { SLUICE_LUA_SMALL = 256, SLUICE_LUA_POOL_MAX = 1 << 20 };

static inline size_t sluice_lua_class(size_t size) { return (size + 15) >> 4; }
static inline size_t sluice_lua_class_bytes(size_t class) { return class << 4; }

static inline void *sluice_lua_obtain(sluice_lua_budget *budget, size_t size) {
    if (size > SLUICE_LUA_SMALL) return malloc(size);
    size_t class = sluice_lua_class(size);
    void *block = budget->small_blocks[class];
    if (block) {
        budget->small_blocks[class] = *(void **)block;
        budget->pooled -= sluice_lua_class_bytes(class);
        return block;
    }
    return malloc(sluice_lua_class_bytes(class));
}

static inline void sluice_lua_release(sluice_lua_budget *budget, void *block, size_t size) {
    if (!block) return;
    if (size > SLUICE_LUA_SMALL || budget->pooled + SLUICE_LUA_SMALL > SLUICE_LUA_POOL_MAX) {
        free(block);
        return;
    }
    size_t class = sluice_lua_class(size);
    *(void **)block = budget->small_blocks[class];
    budget->small_blocks[class] = block;
    budget->pooled += sluice_lua_class_bytes(class);
}

/// After lua_close: hands the kept blocks back to malloc.
static inline void sluice_lua_budget_drain(sluice_lua_budget *budget) {
    for (size_t class = 0; class <= SLUICE_LUA_SMALL >> 4; class++) {
        while (budget->small_blocks[class]) {
            void *block = budget->small_blocks[class];
            budget->small_blocks[class] = *(void **)block;
            free(block);
        }
    }
    budget->pooled = 0;
}

static inline void *sluice_lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    sluice_lua_budget *budget = (sluice_lua_budget *)ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        sluice_lua_release(budget, ptr, old);
        budget->used -= old;
        return NULL;
    }
    if (budget->enforce && nsize > old && budget->used - old + nsize > budget->limit) return NULL;
    void *block;
    if (ptr && old > SLUICE_LUA_SMALL && nsize > SLUICE_LUA_SMALL) {
        block = realloc(ptr, nsize);
    } else if (ptr && old <= SLUICE_LUA_SMALL && nsize <= SLUICE_LUA_SMALL
               && sluice_lua_class(old) == sluice_lua_class(nsize)) {
        block = ptr;                                    // the block already has room
    } else {
        block = sluice_lua_obtain(budget, nsize);
        if (block && ptr) {
            memcpy(block, ptr, old < nsize ? old : nsize);
            sluice_lua_release(budget, ptr, old);
        }
    }
    if (block) budget->used = budget->used - old + nsize;
    return block;
}

static inline sluice_lua_budget *sluice_lua_budget_of(lua_State *L) {
    return *(sluice_lua_budget **)lua_getextraspace(L);
}

static inline void sluice_lua_count_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    sluice_lua_budget *budget = sluice_lua_budget_of(L);
    // Once spent, every further instruction fails too, so a pcall inside the function cannot outlast it.
    budget->exhausted = 1;
    lua_sethook(L, sluice_lua_count_hook, LUA_MASKCOUNT, 1);
    // In a hook, level 0 is the Lua function that was running: name its line.
    luaL_where(L, 0);
    lua_pushfstring(L, "exceeded its budget of %I instructions (functions[].max_instructions)", (lua_Integer)budget->instructions);
    lua_concat(L, 2);
    lua_error(L);
}

/// Charges `steps` units of work done inside a C library function, which the count hook cannot see
/// (it fires between VM instructions only), against the call's budget; past it, raises the same
/// error as the hook, and every further instruction fails too.
static inline void sluice_lua_charge(lua_State *L, long long steps) {
    sluice_lua_budget *budget = sluice_lua_budget_of(L);
    if (!budget->enforce || steps <= 0) return;
    if (steps <= budget->steps) {
        budget->steps -= steps;
        return;
    }
    budget->steps = -1;
    budget->exhausted = 1;
    lua_sethook(L, sluice_lua_count_hook, LUA_MASKCOUNT, 1);
    luaL_error(L, "exceeded its budget of %I instructions (functions[].max_instructions)", (lua_Integer)budget->instructions);
}

#include "patterns.h"

static inline void sluice_lua_materialize(lua_State *L, int index);

static inline int sluice_lua_array(lua_State *L) {
    // A message table not read yet is filled first, so that filling it later cannot undo this.
    sluice_lua_materialize(L, 1);
    if (lua_type(L, 1) != LUA_TTABLE) {
        lua_settop(L, 0);
        lua_createtable(L, 0, 0);
    }
    lua_settop(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, "sluice.shapes");
    lua_pushvalue(L, 1);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    lua_settop(L, 1);
    return 1;
}

static inline int sluice_lua_null_tostring(lua_State *L) {
    lua_pushliteral(L, "sluice.null");
    return 1;
}

/// The base library's `tostring` (luaB_tostring: same checks, same text), writing integers
/// without the printf machinery: `tostring(record.id)` is the usual routing key.
static inline int sluice_lua_tostring(lua_State *L) {
    luaL_checkany(L, 1);
    if (lua_isinteger(L, 1)) {
        lua_Integer value = lua_tointeger(L, 1);
        char digits[24];
        char *end = digits + sizeof digits, *p = end;
        unsigned long long magnitude = value < 0 ? 0ULL - (unsigned long long)value : (unsigned long long)value;
        do {
            *--p = (char)('0' + magnitude % 10);
            magnitude /= 10;
        } while (magnitude);
        if (value < 0) *--p = '-';
        lua_pushlstring(L, p, (size_t)(end - p));
        return 1;
    }
    luaL_tolstring(L, 1, NULL);
    return 1;
}

// MARK: - Lazy message tables
//
// `record`, `changes` and `metadata` reach a function as empty tables with the metatable
// `sluice.proxy` (one per state, in the registry). The first __index, __newindex, __pairs or __len on
// one removes the metatable and has Swift (budget->materialize) fill the table from the message's
// JSON with rawset; then the metamethod finishes as if the table had been full all along. Everything
// here is C so that a Lua error (a bad argument, a nil key) never unwinds through Swift frames; the
// Swift side runs with the memory cap lifted, where the Lua functions it calls cannot raise.
// The base functions that bypass metamethods (next, rawget, rawset, rawlen, getmetatable,
// setmetatable) are replaced by versions that fill such a table first, and `sluice.array` fills its
// argument first, so no Lua code can tell a lazy table from a full one.

/// Fills the table at `index`, which has the proxy metatable: removes the metatable, then has Swift
/// fill it with the memory cap lifted (so that no allocation fails and nothing Swift calls raises).
static inline void sluice_lua_materialize_proxy(lua_State *L, int index) {
    lua_pushnil(L);
    lua_setmetatable(L, index);
    sluice_lua_budget *budget = sluice_lua_budget_of(L);
    if (!budget->materialize) return;
    int enforce = budget->enforce;
    budget->enforce = 0;
    budget->materialize(L, index, budget->materialize_context);
    budget->enforce = enforce;
}

/// If the value at `index` is a message table not filled yet, fills it; anything else stays as it is.
static inline void sluice_lua_materialize(lua_State *L, int index) {
    index = lua_absindex(L, index);
    if (lua_type(L, index) != LUA_TTABLE || !lua_getmetatable(L, index)) return;
    lua_getfield(L, LUA_REGISTRYINDEX, "sluice.proxy");
    int lazy = lua_rawequal(L, -1, -2);
    lua_settop(L, -3);
    if (lazy) sluice_lua_materialize_proxy(L, index);
}

// The metamethods: their first argument is a table with the proxy metatable (Lua calls them so).
static inline int sluice_lua_proxy_index(lua_State *L) {
    lua_settop(L, 2);
    if (lua_type(L, 1) != LUA_TTABLE) return 0;
    sluice_lua_budget *budget = sluice_lua_budget_of(L);
    if (budget->read_field && lua_type(L, 2) == LUA_TSTRING) {
        // `record.id`: read that field alone, keep the table lazy (the field is stored in it).
        int enforce = budget->enforce;
        budget->enforce = 0;
        int found = budget->read_field(L, 1, 2, budget->materialize_context);
        budget->enforce = enforce;
        if (found == 1) return 1;
        lua_settop(L, 2);
    }
    sluice_lua_materialize_proxy(L, 1);
    lua_rawget(L, 1);
    return 1;
}

static inline int sluice_lua_proxy_newindex(lua_State *L) {
    lua_settop(L, 3);
    if (lua_type(L, 1) != LUA_TTABLE) return 0;
    // As an assignment to a plain table would fail (raised here, in C, before Swift runs).
    if (lua_isnil(L, 2)) return luaL_error(L, "index is nil");
    if (lua_type(L, 2) == LUA_TNUMBER && !lua_isinteger(L, 2)) {
        lua_Number n = lua_tonumber(L, 2);
        if (n != n) return luaL_error(L, "index is NaN");
    }
    sluice_lua_materialize_proxy(L, 1);
    lua_rawset(L, 1);
    return 0;
}

/// Upvalue 1: the original `next`.
static inline int sluice_lua_proxy_pairs(lua_State *L) {
    lua_settop(L, 1);
    if (lua_type(L, 1) == LUA_TTABLE) sluice_lua_materialize_proxy(L, 1);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

static inline int sluice_lua_proxy_len(lua_State *L) {
    if (lua_type(L, 1) != LUA_TTABLE) return 0;
    sluice_lua_materialize_proxy(L, 1);
    lua_pushinteger(L, (lua_Integer)lua_rawlen(L, 1));
    return 1;
}

// The base library's raw functions (lbaselib.c, same checks and messages), filling a lazy table first.
static inline int sluice_lua_next(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    sluice_lua_materialize(L, 1);
    lua_settop(L, 2);
    if (lua_next(L, 1)) return 2;
    lua_pushnil(L);
    return 1;
}

static inline int sluice_lua_rawget(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkany(L, 2);
    sluice_lua_materialize(L, 1);
    lua_settop(L, 2);
    lua_rawget(L, 1);
    return 1;
}

static inline int sluice_lua_rawset(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkany(L, 2);
    luaL_checkany(L, 3);
    sluice_lua_materialize(L, 1);
    lua_settop(L, 3);
    lua_rawset(L, 1);
    return 1;
}

static inline int sluice_lua_rawlen(lua_State *L) {
    int t = lua_type(L, 1);
    luaL_argexpected(L, t == LUA_TTABLE || t == LUA_TSTRING, 1, "table or string");
    sluice_lua_materialize(L, 1);
    lua_pushinteger(L, (lua_Integer)lua_rawlen(L, 1));
    return 1;
}

static inline int sluice_lua_getmetatable(lua_State *L) {
    luaL_checkany(L, 1);
    sluice_lua_materialize(L, 1);
    if (!lua_getmetatable(L, 1)) {
        lua_pushnil(L);
        return 1;
    }
    luaL_getmetafield(L, 1, "__metatable");
    return 1;
}

static inline int sluice_lua_setmetatable(lua_State *L) {
    int t = lua_type(L, 2);
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
    sluice_lua_materialize(L, 1);
    if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
        return luaL_error(L, "cannot change a protected metatable");
    lua_settop(L, 2);
    lua_setmetatable(L, 1);
    return 1;
}

/// A table received untouched (or partly read) and kept past its call holds its call's message text
/// and where its object is in it, under keys no Lua code can make (the state's budget address and
/// the byte after it, light userdata): one copy of the message at the end of a call serves all of
/// its tables. Filling the table takes both out. `text` is the stack index of that copy.
static inline void sluice_lua_keep_text(lua_State *L, int table, int text, lua_Integer start, lua_Integer count) {
    table = lua_absindex(L, table);
    text = lua_absindex(L, text);
    sluice_lua_budget *budget = sluice_lua_budget_of(L);
    lua_pushvalue(L, text);
    lua_rawsetp(L, table, budget);
    lua_pushinteger(L, (start << 32) | count);
    lua_rawsetp(L, table, (char *)budget + 1);
}

/// Pushes the text kept in the table and then its range (start << 32 | count), removing both from
/// the table, and returns LUA_TSTRING; pushes nothing and returns LUA_TNIL when there is none.
static inline int sluice_lua_take_kept_text(lua_State *L, int table) {
    table = lua_absindex(L, table);
    sluice_lua_budget *budget = sluice_lua_budget_of(L);
    if (lua_rawgetp(L, table, budget) != LUA_TSTRING) {
        lua_settop(L, -2);
        return LUA_TNIL;
    }
    lua_rawgetp(L, table, (char *)budget + 1);
    lua_pushnil(L);
    lua_rawsetp(L, table, budget);
    lua_pushnil(L);
    lua_rawsetp(L, table, (char *)budget + 1);
    return LUA_TSTRING;
}

/// The proxy metatable and the replaced base functions.
static inline void sluice_lua_open_proxies(lua_State *L) {
    lua_createtable(L, 0, 4);
    lua_pushcfunction(L, sluice_lua_proxy_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, sluice_lua_proxy_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_getglobal(L, "next");
    lua_pushcclosure(L, sluice_lua_proxy_pairs, 1);
    lua_setfield(L, -2, "__pairs");
    lua_pushcfunction(L, sluice_lua_proxy_len);
    lua_setfield(L, -2, "__len");
    lua_setfield(L, LUA_REGISTRYINDEX, "sluice.proxy");

    const struct { const char *name; lua_CFunction function; } replaced[] = {
        {"next", sluice_lua_next}, {"rawget", sluice_lua_rawget}, {"rawset", sluice_lua_rawset},
        {"rawlen", sluice_lua_rawlen}, {"getmetatable", sluice_lua_getmetatable},
        {"setmetatable", sluice_lua_setmetatable}, {"tostring", sluice_lua_tostring}, {NULL, NULL},
    };
    for (int i = 0; replaced[i].name; i++) {
        lua_pushcfunction(L, replaced[i].function);
        lua_setglobal(L, replaced[i].name);
    }
}

/// base (without load, dofile, loadfile, collectgarbage), string (without dump), table, math, utf8,
/// with the library functions that loop in C counting their steps (patterns.h); the `sluice` table
/// (null, array) and the registry's weak table of JSON shapes.
static inline int sluice_lua_open_sandbox(lua_State *L) {
    luaL_requiref(L, "_G", luaopen_base, 1);
    luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 1);
    luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 1);
    luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 1);
    luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 1);
    lua_settop(L, 0);
    const char *removed[] = {"load", "loadstring", "dofile", "loadfile", "require", "collectgarbage", NULL};
    for (int i = 0; removed[i]; i++) {
        lua_pushnil(L);
        lua_setglobal(L, removed[i]);
    }
    lua_getglobal(L, "string");
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_settop(L, 0);
    sluice_lua_open_counted_library(L);

    lua_createtable(L, 0, 0);              // shapes: table -> key list (objects) or true (arrays)
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, "sluice.shapes");

    lua_pushlightuserdata(L, NULL);        // sluice.null; its metatable names it when printed
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, sluice_lua_null_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_setmetatable(L, -2);
    lua_settop(L, 0);

    lua_createtable(L, 0, 2);
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    lua_pushcfunction(L, sluice_lua_array);
    lua_setfield(L, -2, "array");
    lua_setglobal(L, "sluice");
    sluice_lua_open_proxies(L);
    return 0;
}

/// A new state on the capped allocator, with the sandbox opened; NULL if that failed.
static inline lua_State *sluice_lua_newstate(sluice_lua_budget *budget) {
    lua_State *L = lua_newstate(sluice_lua_alloc, budget);
    if (!L) return NULL;
    *(sluice_lua_budget **)lua_getextraspace(L) = budget;
    lua_pushcfunction(L, sluice_lua_open_sandbox);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
        lua_close(L);
        return NULL;
    }
    // Every call leaves a few tables and strings behind that die young: the generational
    // collector frees those cheaply, without walking what the function keeps.
    lua_gc(L, LUA_GCGEN, 0, 0);
    return L;
}

/// Calls the function below the `nargs` arguments on top of the stack under the budgets.
static inline int sluice_lua_pcall(lua_State *L, int nargs, int nresults, long long instructions) {
    sluice_lua_budget *budget = sluice_lua_budget_of(L);
    budget->instructions = instructions;
    budget->steps = instructions;
    budget->exhausted = 0;
    budget->enforce = 1;
    lua_sethook(L, sluice_lua_count_hook, LUA_MASKCOUNT, instructions > 0x7fffffff ? 0x7fffffff : (int)instructions);
    int status = lua_pcall(L, nargs, nresults, 0);
    lua_sethook(L, NULL, 0, 0);
    budget->enforce = 0;
    return status;
}

/// Loads a chunk (text only, never precompiled bytecode).
static inline int sluice_lua_load(lua_State *L, const char *code, size_t length, const char *chunkname) {
    return luaL_loadbufferx(L, code, length, chunkname, "t");
}

static inline int sluice_lua_registryindex(void) { return LUA_REGISTRYINDEX; }
static inline void sluice_lua_pop(lua_State *L, int n) { lua_settop(L, -(n)-1); }
static inline int sluice_lua_isnull(lua_State *L, int index) {
    return lua_type(L, index) == LUA_TLIGHTUSERDATA && lua_touserdata(L, index) == NULL;
}
