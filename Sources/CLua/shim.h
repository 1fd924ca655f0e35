// Lua 5.4 for Sluice's user functions, with what Swift cannot reach through macros and what must
// stay in C: the allocator with a memory cap, the instruction-budget hook (it raises a Lua error,
// which unwinds with longjmp and so must not cross Swift frames) and the sandbox's library setup.
#include <lua.h>
#include <lualib.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

typedef struct sluice_lua_budget {
    size_t used;
    size_t limit;
    /// The cap applies only while user code runs, so that Sluice's own pushes never fail.
    int enforce;
    long long instructions;
    int exhausted;
} sluice_lua_budget;

static inline void *sluice_lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    sluice_lua_budget *budget = (sluice_lua_budget *)ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        budget->used -= old;
        return NULL;
    }
    if (budget->enforce && nsize > old && budget->used - old + nsize > budget->limit) return NULL;
    void *block = realloc(ptr, nsize);
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

static inline int sluice_lua_array(lua_State *L) {
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

/// base (without load, dofile, loadfile, collectgarbage), string (without dump), table, math, utf8;
/// the `sluice` table (null, array) and the registry's weak table of JSON shapes.
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
    return L;
}

/// Calls the function below the `nargs` arguments on top of the stack under the budgets.
static inline int sluice_lua_pcall(lua_State *L, int nargs, int nresults, long long instructions) {
    sluice_lua_budget *budget = sluice_lua_budget_of(L);
    budget->instructions = instructions;
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
