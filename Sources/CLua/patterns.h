// Lua's pattern matching (string.find, string.match, string.gmatch, string.gsub) with a step count.
//
// Lua's count hook fires between VM instructions only, and one call of a C library function is one
// instruction: `string.find(string.rep("a", 40), string.rep("a?", 40) .. string.rep("a", 40))`
// backtracks 2^40 times inside a single call and would hold the sink's thread for days, whatever
// max_instructions says. This is Lua 5.4.4's matcher (lstrlib.c, MIT licence, Copyright (C)
// 1994-2022 Lua.org, PUC-Rio), unchanged in what it matches, with each unit of work charged to the
// call's budget (`sluice_lua_charge`): every pattern item `match` tries, and every 16 bytes a loop
// scans or compares. Included by shim.h after the budget; everything here is static, as the shim is.

#define SLUICE_MAXCAPTURES 32
#define SLUICE_MAXCCALLS 200
#define SLUICE_L_ESC '%'
#define SLUICE_SPECIALS "^$*+?.([%-"
#define SLUICE_CAP_UNFINISHED (-1)
#define SLUICE_CAP_POSITION (-2)
#define sluice_uchar(c) ((unsigned char)(c))

typedef struct sluice_match_state {
    const char *src_init;
    const char *src_end;
    const char *p_end;
    lua_State *L;
    int matchdepth;
    unsigned char level;
    struct {
        const char *init;
        ptrdiff_t len;
    } capture[SLUICE_MAXCAPTURES];
} sluice_match_state;

static inline const char *sluice_match(sluice_match_state *ms, const char *s, const char *p);

/// Relative initial position (negative: back from the end), clipped to [1, inf).
static inline size_t sluice_posrelat(lua_Integer pos, size_t len) {
    if (pos > 0) return (size_t)pos;
    if (pos == 0) return 1;
    if (pos < -(lua_Integer)len) return 1;
    return len + (size_t)pos + 1;
}

static inline int sluice_check_capture(sluice_match_state *ms, int l) {
    l -= '1';
    if (l < 0 || l >= ms->level || ms->capture[l].len == SLUICE_CAP_UNFINISHED)
        return luaL_error(ms->L, "invalid capture index %%%d", l + 1);
    return l;
}

static inline int sluice_capture_to_close(sluice_match_state *ms) {
    int level = ms->level;
    for (level--; level >= 0; level--)
        if (ms->capture[level].len == SLUICE_CAP_UNFINISHED) return level;
    return luaL_error(ms->L, "invalid pattern capture");
}

static inline const char *sluice_classend(sluice_match_state *ms, const char *p) {
    switch (*p++) {
    case SLUICE_L_ESC:
        if (p == ms->p_end) luaL_error(ms->L, "malformed pattern (ends with '%%')");
        return p + 1;
    case '[': {
        const char *start = p;
        if (*p == '^') p++;
        do { // look for a ']'
            if (p == ms->p_end) luaL_error(ms->L, "malformed pattern (missing ']')");
            if (*(p++) == SLUICE_L_ESC && p < ms->p_end) p++; // skip escapes (e.g. '%]')
        } while (*p != ']');
        sluice_lua_charge(ms->L, (p - start) >> 4);
        return p + 1;
    }
    default:
        return p;
    }
}

static inline int sluice_match_class(int c, int cl) {
    int res;
    switch (tolower(cl)) {
    case 'a': res = isalpha(c); break;
    case 'c': res = iscntrl(c); break;
    case 'd': res = isdigit(c); break;
    case 'g': res = isgraph(c); break;
    case 'l': res = islower(c); break;
    case 'p': res = ispunct(c); break;
    case 's': res = isspace(c); break;
    case 'u': res = isupper(c); break;
    case 'w': res = isalnum(c); break;
    case 'x': res = isxdigit(c); break;
    case 'z': res = (c == 0); break; // deprecated option
    default: return (cl == c);
    }
    return (islower(cl) ? res : !res);
}

static inline int sluice_matchbracketclass(sluice_match_state *ms, int c, const char *p, const char *ec) {
    int sig = 1;
    sluice_lua_charge(ms->L, (ec - p) >> 4);
    if (*(p + 1) == '^') {
        sig = 0;
        p++; // skip the '^'
    }
    while (++p < ec) {
        if (*p == SLUICE_L_ESC) {
            p++;
            if (sluice_match_class(c, sluice_uchar(*p))) return sig;
        } else if ((*(p + 1) == '-') && (p + 2 < ec)) {
            p += 2;
            if (sluice_uchar(*(p - 2)) <= c && c <= sluice_uchar(*p)) return sig;
        } else if (sluice_uchar(*p) == c) {
            return sig;
        }
    }
    return !sig;
}

static inline int sluice_singlematch(sluice_match_state *ms, const char *s, const char *p, const char *ep) {
    if (s >= ms->src_end) return 0;
    int c = sluice_uchar(*s);
    switch (*p) {
    case '.': return 1; // matches any char
    case SLUICE_L_ESC: return sluice_match_class(c, sluice_uchar(*(p + 1)));
    case '[': return sluice_matchbracketclass(ms, c, p, ep - 1);
    default: return (sluice_uchar(*p) == c);
    }
}

static inline const char *sluice_matchbalance(sluice_match_state *ms, const char *s, const char *p) {
    if (p >= ms->p_end - 1) luaL_error(ms->L, "malformed pattern (missing arguments to '%%b')");
    if (s >= ms->src_end || *s != *p) return NULL;
    const char *start = s;
    int b = *p;
    int e = *(p + 1);
    int cont = 1;
    while (++s < ms->src_end) {
        if (*s == e) {
            if (--cont == 0) {
                sluice_lua_charge(ms->L, (s - start) >> 4);
                return s + 1;
            }
        } else if (*s == b) {
            cont++;
        }
    }
    sluice_lua_charge(ms->L, (s - start) >> 4);
    return NULL; // string ends out of balance
}

static inline const char *sluice_max_expand(sluice_match_state *ms, const char *s, const char *p, const char *ep) {
    ptrdiff_t i = 0; // counts maximum expand for item
    while (sluice_singlematch(ms, s + i, p, ep)) i++;
    sluice_lua_charge(ms->L, i >> 4);
    // keeps trying to match with the maximum repetitions
    while (i >= 0) {
        const char *res = sluice_match(ms, (s + i), ep + 1);
        if (res) return res;
        i--; // else didn't match; reduce 1 repetition to try again
    }
    return NULL;
}

static inline const char *sluice_min_expand(sluice_match_state *ms, const char *s, const char *p, const char *ep) {
    for (;;) {
        const char *res = sluice_match(ms, s, ep + 1);
        if (res != NULL) return res;
        if (sluice_singlematch(ms, s, p, ep)) s++; // try with one more repetition
        else return NULL;
    }
}

static inline const char *sluice_start_capture(sluice_match_state *ms, const char *s, const char *p, int what) {
    const char *res;
    int level = ms->level;
    if (level >= SLUICE_MAXCAPTURES) luaL_error(ms->L, "too many captures");
    ms->capture[level].init = s;
    ms->capture[level].len = what;
    ms->level = level + 1;
    if ((res = sluice_match(ms, s, p)) == NULL) ms->level--; // match failed: undo capture
    return res;
}

static inline const char *sluice_end_capture(sluice_match_state *ms, const char *s, const char *p) {
    int l = sluice_capture_to_close(ms);
    const char *res;
    ms->capture[l].len = s - ms->capture[l].init; // close capture
    if ((res = sluice_match(ms, s, p)) == NULL) ms->capture[l].len = SLUICE_CAP_UNFINISHED; // undo capture
    return res;
}

static inline const char *sluice_match_capture(sluice_match_state *ms, const char *s, int l) {
    size_t len;
    l = sluice_check_capture(ms, l);
    len = (size_t)ms->capture[l].len;
    sluice_lua_charge(ms->L, (long long)(len >> 4));
    if ((size_t)(ms->src_end - s) >= len && memcmp(ms->capture[l].init, s, len) == 0) return s + len;
    return NULL;
}

static inline const char *sluice_match(sluice_match_state *ms, const char *s, const char *p) {
    if (ms->matchdepth-- == 0) luaL_error(ms->L, "pattern too complex");
init: // using goto's to optimize tail recursion; each pass is a step
    sluice_lua_charge(ms->L, 1);
    if (p != ms->p_end) { // end of pattern?
        switch (*p) {
        case '(': // start capture
            if (*(p + 1) == ')') s = sluice_start_capture(ms, s, p + 2, SLUICE_CAP_POSITION); // position capture
            else s = sluice_start_capture(ms, s, p + 1, SLUICE_CAP_UNFINISHED);
            break;
        case ')': // end capture
            s = sluice_end_capture(ms, s, p + 1);
            break;
        case '$':
            if ((p + 1) != ms->p_end) goto dflt; // is the '$' the last char in pattern? no: default
            s = (s == ms->src_end) ? s : NULL;   // check end of string
            break;
        case SLUICE_L_ESC: // escaped sequences not in the format class[*+?-]?
            switch (*(p + 1)) {
            case 'b': // balanced string?
                s = sluice_matchbalance(ms, s, p + 2);
                if (s != NULL) {
                    p += 4;
                    goto init; // return match(ms, s, p + 4);
                }
                break; // else fail (s == NULL)
            case 'f': { // frontier?
                const char *ep;
                char previous;
                p += 2;
                if (*p != '[') luaL_error(ms->L, "missing '[' after '%%f' in pattern");
                ep = sluice_classend(ms, p); // points to what is next
                previous = (s == ms->src_init) ? '\0' : *(s - 1);
                if (!sluice_matchbracketclass(ms, sluice_uchar(previous), p, ep - 1)
                    && sluice_matchbracketclass(ms, sluice_uchar(*s), p, ep - 1)) {
                    p = ep;
                    goto init; // return match(ms, s, ep);
                }
                s = NULL; // match failed
                break;
            }
            case '0': case '1': case '2': case '3': case '4':
            case '5': case '6': case '7': case '8': case '9': // capture results (%0-%9)?
                s = sluice_match_capture(ms, s, sluice_uchar(*(p + 1)));
                if (s != NULL) {
                    p += 2;
                    goto init; // return match(ms, s, p + 2)
                }
                break;
            default:
                goto dflt;
            }
            break;
        default:
        dflt: { // pattern class plus optional suffix
            const char *ep = sluice_classend(ms, p); // points to optional suffix
            if (!sluice_singlematch(ms, s, p, ep)) { // does not match at least once?
                if (*ep == '*' || *ep == '?' || *ep == '-') { // accept empty?
                    p = ep + 1;
                    goto init; // return match(ms, s, ep + 1);
                }
                s = NULL; // '+' or no suffix: fail
            } else { // matched once
                switch (*ep) { // handle optional suffix
                case '?': { // optional
                    const char *res;
                    if ((res = sluice_match(ms, s + 1, ep + 1)) != NULL) {
                        s = res;
                    } else {
                        p = ep + 1;
                        goto init; // else return match(ms, s, ep + 1);
                    }
                    break;
                }
                case '+': // 1 or more repetitions
                    s++;  // 1 match already done
                    // FALLTHROUGH
                case '*': // 0 or more repetitions
                    s = sluice_max_expand(ms, s, p, ep);
                    break;
                case '-': // 0 or more repetitions (minimum)
                    s = sluice_min_expand(ms, s, p, ep);
                    break;
                default: // no suffix
                    s++;
                    p = ep;
                    goto init; // return match(ms, s + 1, ep);
                }
            }
            break;
        }
        }
    }
    ms->matchdepth++;
    return s;
}

/// A plain search (no special characters), charging each candidate's comparison.
static inline const char *sluice_lmemfind(lua_State *L, const char *s1, size_t l1, const char *s2, size_t l2) {
    if (l2 == 0) return s1; // empty strings are everywhere
    if (l2 > l1) return NULL; // avoids a negative 'l1'
    const char *init; // to search for a '*s2' inside 's1'
    l2--; // 1st char will be checked by 'memchr'
    l1 = l1 - l2; // 's2' cannot be found after that
    while (l1 > 0 && (init = (const char *)memchr(s1, *s2, l1)) != NULL) {
        sluice_lua_charge(L, 1 + (long long)(l2 >> 4));
        init++; // 1st char is already checked
        if (memcmp(init, s2 + 1, l2) == 0) return init - 1;
        l1 -= init - s1; // correct 'l1' and 's1' to try again
        s1 = init;
    }
    return NULL;
}

/// The i-th capture: its length, with its address in `*cap`; a position capture is pushed and
/// CAP_POSITION returned. Without captures, i == 0 is the whole match s..e.
static inline size_t sluice_get_onecapture(sluice_match_state *ms, int i, const char *s, const char *e, const char **cap) {
    if (i >= ms->level) {
        if (i != 0) luaL_error(ms->L, "invalid capture index %%%d", i + 1);
        *cap = s;
        return (size_t)(e - s);
    }
    ptrdiff_t capl = ms->capture[i].len;
    *cap = ms->capture[i].init;
    if (capl == SLUICE_CAP_UNFINISHED) luaL_error(ms->L, "unfinished capture");
    else if (capl == SLUICE_CAP_POSITION) lua_pushinteger(ms->L, (ms->capture[i].init - ms->src_init) + 1);
    return (size_t)capl;
}

static inline void sluice_push_onecapture(sluice_match_state *ms, int i, const char *s, const char *e) {
    const char *cap;
    ptrdiff_t l = (ptrdiff_t)sluice_get_onecapture(ms, i, s, e, &cap);
    if (l != SLUICE_CAP_POSITION) lua_pushlstring(ms->L, cap, (size_t)l);
    // else the position was already pushed
}

static inline int sluice_push_captures(sluice_match_state *ms, const char *s, const char *e) {
    int nlevels = (ms->level == 0 && s) ? 1 : ms->level;
    luaL_checkstack(ms->L, nlevels, "too many captures");
    for (int i = 0; i < nlevels; i++) sluice_push_onecapture(ms, i, s, e);
    return nlevels;
}

/// Whether the pattern has no special characters.
static inline int sluice_nospecials(const char *p, size_t l) {
    size_t upto = 0;
    do {
        if (strpbrk(p + upto, SLUICE_SPECIALS)) return 0;
        upto += strlen(p + upto) + 1; // may have more after \0
    } while (upto <= l);
    return 1;
}

static inline void sluice_prepstate(sluice_match_state *ms, lua_State *L, const char *s, size_t ls, const char *p, size_t lp) {
    ms->L = L;
    ms->matchdepth = SLUICE_MAXCCALLS;
    ms->src_init = s;
    ms->src_end = s + ls;
    ms->p_end = p + lp;
}

static inline void sluice_reprepstate(sluice_match_state *ms) { ms->level = 0; }

static inline int sluice_str_find_aux(lua_State *L, int find) {
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = sluice_posrelat(luaL_optinteger(L, 3, 1), ls) - 1;
    if (init > ls) { // start after string's end?
        luaL_pushfail(L); // cannot find anything
        return 1;
    }
    if (find && (lua_toboolean(L, 4) || sluice_nospecials(p, lp))) { // explicit request or no special characters?
        const char *s2 = sluice_lmemfind(L, s + init, ls - init, p, lp);
        if (s2) {
            lua_pushinteger(L, (s2 - s) + 1);
            lua_pushinteger(L, (lua_Integer)((size_t)(s2 - s) + lp));
            return 2;
        }
    } else {
        sluice_match_state ms;
        const char *s1 = s + init;
        int anchor = (*p == '^');
        if (anchor) {
            p++;
            lp--; // skip anchor character
        }
        sluice_prepstate(&ms, L, s, ls, p, lp);
        do {
            const char *res;
            sluice_reprepstate(&ms);
            if ((res = sluice_match(&ms, s1, p)) != NULL) {
                if (find) {
                    lua_pushinteger(L, (s1 - s) + 1); // start
                    lua_pushinteger(L, res - s);      // end
                    return sluice_push_captures(&ms, NULL, 0) + 2;
                }
                return sluice_push_captures(&ms, s1, res);
            }
        } while (s1++ < ms.src_end && !anchor);
    }
    luaL_pushfail(L); // not found
    return 1;
}

static inline int sluice_str_find(lua_State *L) { return sluice_str_find_aux(L, 1); }

static inline int sluice_str_match(lua_State *L) { return sluice_str_find_aux(L, 0); }

typedef struct sluice_gmatch_state {
    const char *src;       // current position
    const char *p;         // pattern
    const char *lastmatch; // end of last match
    sluice_match_state ms;
} sluice_gmatch_state;

static inline int sluice_gmatch_aux(lua_State *L) {
    sluice_gmatch_state *gm = (sluice_gmatch_state *)lua_touserdata(L, lua_upvalueindex(3));
    const char *src;
    gm->ms.L = L;
    for (src = gm->src; src <= gm->ms.src_end; src++) {
        const char *e;
        sluice_reprepstate(&gm->ms);
        if ((e = sluice_match(&gm->ms, src, gm->p)) != NULL && e != gm->lastmatch) {
            gm->src = gm->lastmatch = e;
            return sluice_push_captures(&gm->ms, src, e);
        }
    }
    return 0; // not found
}

static inline int sluice_gmatch(lua_State *L) {
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = sluice_posrelat(luaL_optinteger(L, 3, 1), ls) - 1;
    sluice_gmatch_state *gm;
    lua_settop(L, 2); // keep strings on closure to avoid being collected
    gm = (sluice_gmatch_state *)lua_newuserdatauv(L, sizeof(sluice_gmatch_state), 0);
    if (init > ls) init = ls + 1; // start after string's end: avoid overflows in 's + init'
    sluice_prepstate(&gm->ms, L, s, ls, p, lp);
    gm->src = s + init;
    gm->p = p;
    gm->lastmatch = NULL;
    lua_pushcclosure(L, sluice_gmatch_aux, 3);
    return 1;
}

static inline void sluice_add_s(sluice_match_state *ms, luaL_Buffer *b, const char *s, const char *e) {
    size_t l;
    lua_State *L = ms->L;
    const char *news = lua_tolstring(L, 3, &l);
    const char *p;
    while ((p = (const char *)memchr(news, SLUICE_L_ESC, l)) != NULL) {
        luaL_addlstring(b, news, (size_t)(p - news));
        p++; // skip ESC
        if (*p == SLUICE_L_ESC) { // '%%'
            luaL_addchar(b, *p);
        } else if (*p == '0') { // '%0'
            luaL_addlstring(b, s, (size_t)(e - s));
        } else if (isdigit(sluice_uchar(*p))) { // '%n'
            const char *cap;
            ptrdiff_t resl = (ptrdiff_t)sluice_get_onecapture(ms, *p - '1', s, e, &cap);
            if (resl == SLUICE_CAP_POSITION) luaL_addvalue(b); // add position to accumulated result
            else luaL_addlstring(b, cap, (size_t)resl);
        } else {
            luaL_error(L, "invalid use of '%c' in replacement string", SLUICE_L_ESC);
        }
        l -= (size_t)(p + 1 - news);
        news = p + 1;
    }
    luaL_addlstring(b, news, l);
}

/// Adds the replacement value to the buffer; true if the subject changed (a function or table
/// giving nil or false keeps the original text).
static inline int sluice_add_value(sluice_match_state *ms, luaL_Buffer *b, const char *s, const char *e, int tr) {
    lua_State *L = ms->L;
    switch (tr) {
    case LUA_TFUNCTION: {
        lua_pushvalue(L, 3);
        int n = sluice_push_captures(ms, s, e); // all captures as arguments
        lua_call(L, n, 1);
        break;
    }
    case LUA_TTABLE:
        sluice_push_onecapture(ms, 0, s, e); // first capture is the index
        lua_gettable(L, 3);
        break;
    default: // LUA_TNUMBER or LUA_TSTRING
        sluice_add_s(ms, b, s, e);
        return 1;
    }
    if (!lua_toboolean(L, -1)) { // nil or false?
        lua_pop(L, 1);
        luaL_addlstring(b, s, (size_t)(e - s)); // keep original text
        return 0;
    } else if (!lua_isstring(L, -1)) {
        return luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
    }
    luaL_addvalue(b); // add result to accumulator
    return 1;
}

static inline int sluice_str_gsub(lua_State *L) {
    size_t srcl, lp;
    const char *src = luaL_checklstring(L, 1, &srcl); // subject
    const char *p = luaL_checklstring(L, 2, &lp);     // pattern
    const char *lastmatch = NULL;                     // end of last match
    int tr = lua_type(L, 3);                          // replacement type
    lua_Integer max_s = luaL_optinteger(L, 4, (lua_Integer)srcl + 1); // max replacements
    int anchor = (*p == '^');
    lua_Integer n = 0; // replacement count
    int changed = 0;
    sluice_match_state ms;
    luaL_Buffer b;
    luaL_argexpected(L, tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION || tr == LUA_TTABLE, 3,
                     "string/function/table");
    luaL_buffinit(L, &b);
    if (anchor) {
        p++;
        lp--; // skip anchor character
    }
    sluice_prepstate(&ms, L, src, srcl, p, lp);
    while (n < max_s) {
        const char *e;
        sluice_reprepstate(&ms);
        if ((e = sluice_match(&ms, src, p)) != NULL && e != lastmatch) { // match?
            n++;
            changed = sluice_add_value(&ms, &b, src, e, tr) | changed;
            src = lastmatch = e;
        } else if (src < ms.src_end) { // otherwise, skip one character
            luaL_addchar(&b, *src++);
        } else {
            break; // end of subject
        }
        if (anchor) break;
    }
    if (!changed) { // no changes?
        lua_pushvalue(L, 1); // return original string
    } else {
        luaL_addlstring(&b, src, (size_t)(ms.src_end - src));
        luaL_pushresult(&b);
    }
    lua_pushinteger(L, n);
    return 2;
}

// MARK: - Other library loops that run in C

// Each wraps the library's own function (upvalue 1), which it calls in its own frame with the stack
// as it came, so argument errors still name the function as Lua would.

static inline lua_CFunction sluice_lua_original(lua_State *L) { return lua_tocfunction(L, lua_upvalueindex(1)); }

/// string.rep: an empty result is returned at once (Lua's own loops n times copying nothing, so
/// `string.rep("", 2^62)` never returns). A long one is bounded by the memory cap (the buffer is
/// allocated before the loop) and charges a step per 16 copies after it.
static inline int sluice_str_rep(lua_State *L) {
    size_t l, lsep;
    luaL_checklstring(L, 1, &l);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_optlstring(L, 3, "", &lsep);
    if (n <= 0 || (l == 0 && lsep == 0)) {
        lua_pushliteral(L, "");
        return 1;
    }
    int results = sluice_lua_original(L)(L);
    sluice_lua_charge(L, n >> 4);
    return results;
}

/// table.move: a step per element moved, charged before moving.
static inline int sluice_table_move(lua_State *L) {
    lua_Integer f = luaL_checkinteger(L, 2);
    lua_Integer e = luaL_checkinteger(L, 3);
    if (e >= f) {
        luaL_argcheck(L, f > 0 || e < LUA_MAXINTEGER + f, 3, "too many elements to move");
        sluice_lua_charge(L, e - f + 1);
    }
    return sluice_lua_original(L)(L);
}

/// table.insert(t, pos, v) and table.remove(t, pos) shift the elements after `pos` one by one, up to
/// `#t` (which a __len metamethod may put anywhere): a step per element shifted, charged before.
/// Upvalue 2: true for insert.
static inline int sluice_table_shift(lua_State *L) {
    int insert = lua_toboolean(L, lua_upvalueindex(2));
    int positioned;
    lua_Integer pos = lua_tointegerx(L, 2, &positioned);
    if (lua_gettop(L) == (insert ? 3 : 2) && positioned && lua_type(L, 1) == LUA_TTABLE) {
        lua_Integer size = luaL_len(L, 1);
        if (size > pos) sluice_lua_charge(L, size - pos);
    }
    return sluice_lua_original(L)(L);
}

/// table.sort: a step per element, charged before (a Lua comparator's instructions count anyway; the
/// default comparison and a C function as comparator would not).
static inline int sluice_table_sort(lua_State *L) {
    if (lua_type(L, 1) == LUA_TTABLE) {
        lua_Integer size = luaL_len(L, 1);
        if (size > 0) sluice_lua_charge(L, size);
    }
    return sluice_lua_original(L)(L);
}

/// Puts the step-counted versions in the `string` and `table` tables (the string metatable's
/// __index is the `string` table, so `s:find(...)` uses them too).
static inline void sluice_lua_open_counted_library(lua_State *L) {
    lua_getglobal(L, "string");
    const luaL_Reg matching[] = {
        {"find", sluice_str_find}, {"match", sluice_str_match}, {"gmatch", sluice_gmatch}, {"gsub", sluice_str_gsub},
        {NULL, NULL},
    };
    luaL_setfuncs(L, matching, 0);
    lua_getfield(L, -1, "rep");
    lua_pushcclosure(L, sluice_str_rep, 1);
    lua_setfield(L, -2, "rep");
    lua_settop(L, 0);

    lua_getglobal(L, "table");
    lua_getfield(L, -1, "move");
    lua_pushcclosure(L, sluice_table_move, 1);
    lua_setfield(L, -2, "move");
    lua_getfield(L, -1, "insert");
    lua_pushboolean(L, 1);
    lua_pushcclosure(L, sluice_table_shift, 2);
    lua_setfield(L, -2, "insert");
    lua_getfield(L, -1, "remove");
    lua_pushboolean(L, 0);
    lua_pushcclosure(L, sluice_table_shift, 2);
    lua_setfield(L, -2, "remove");
    lua_getfield(L, -1, "sort");
    lua_pushcclosure(L, sluice_table_sort, 1);
    lua_setfield(L, -2, "sort");
    lua_settop(L, 0);
}
