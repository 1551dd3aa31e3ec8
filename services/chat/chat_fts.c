/*  chat_fts: see chat_fts.h. The index and the query go through the same
    word splitter and the same tokenizer, so whatever a word becomes (folded,
    stemmed, cut), it becomes the same on both sides. */
#include "chat_fts.h"

#include "log.h"

#include <libstemmer.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*  What a character is to the word splitter. */
typedef enum {
    CC_SEP = 0,  /* ends a word: spaces, punctuation, symbols, emoji, bad bytes */
    CC_LATIN,    /* a Latin letter: the word goes to the English stemmer */
    CC_CYRILLIC, /* a Cyrillic letter: the Russian stemmer */
    CC_OTHER,    /* digits, letters of other scripts: kept as they are */
    CC_MARK      /* continues a word but is left out of its token; cannot start one */
} char_class_t;

/*  Code points from U+0080 up whose class is not CC_OTHER, sorted. Not the
    whole of Unicode: the scripts a Russian school writes in are exact, and
    elsewhere the common punctuation and symbol blocks separate words while
    everything else counts as a letter. Marks are dropped from tokens so that
    a stress mark («уро́ки»), a soft hyphen or a decomposed «ё» do not stop a
    word from matching the same word typed plainly. */
static const struct {
    uint32_t lo, hi;
    char_class_t cls;
} s_ranges[] = {
    {0x0080, 0x00A9, CC_SEP},       /* C1 controls, no-break space, ¡¢£¤¥¦§¨© */
    {0x00AA, 0x00AA, CC_LATIN},     /* ª */
    {0x00AB, 0x00AC, CC_SEP},       /* « ¬ */
    {0x00AD, 0x00AD, CC_MARK},      /* soft hyphen */
    {0x00AE, 0x00B4, CC_SEP},       /* ® ¯ ° ± ² ³ ´ */
    {0x00B6, 0x00B9, CC_SEP},       /* ¶ · ¸ ¹ (µ is a letter) */
    {0x00BA, 0x00BA, CC_LATIN},     /* º */
    {0x00BB, 0x00BF, CC_SEP},       /* » ¼ ½ ¾ ¿ */
    {0x00C0, 0x00D6, CC_LATIN},
    {0x00D7, 0x00D7, CC_SEP},       /* × */
    {0x00D8, 0x00F6, CC_LATIN},
    {0x00F7, 0x00F7, CC_SEP},       /* ÷ */
    {0x00F8, 0x02AF, CC_LATIN},     /* Latin-1, Extended-A and -B, IPA */
    {0x02B0, 0x036F, CC_MARK},      /* modifier letters (ʼ), combining diacritics */
    {0x037E, 0x037E, CC_SEP},       /* Greek question mark */
    {0x0387, 0x0387, CC_SEP},       /* Greek ano teleia */
    {0x0400, 0x0481, CC_CYRILLIC},
    {0x0482, 0x0482, CC_SEP},       /* ҂ */
    {0x0483, 0x0489, CC_MARK},      /* Cyrillic combining marks */
    {0x048A, 0x052F, CC_CYRILLIC},
    {0x055A, 0x055F, CC_SEP},       /* Armenian punctuation */
    {0x0589, 0x058A, CC_SEP},
    {0x05BE, 0x05BE, CC_SEP},       /* Hebrew punctuation */
    {0x05C0, 0x05C0, CC_SEP},
    {0x05C3, 0x05C3, CC_SEP},
    {0x05C6, 0x05C6, CC_SEP},
    {0x05F3, 0x05F4, CC_SEP},
    {0x0600, 0x060F, CC_SEP},       /* Arabic signs and punctuation */
    {0x061B, 0x061F, CC_SEP},
    {0x066A, 0x066D, CC_SEP},
    {0x06D4, 0x06D4, CC_SEP},
    {0x0964, 0x0965, CC_SEP},       /* Devanagari danda */
    {0x0970, 0x0970, CC_SEP},
    {0x0E3F, 0x0E3F, CC_SEP},       /* Thai currency and punctuation */
    {0x0E4F, 0x0E4F, CC_SEP},
    {0x0E5A, 0x0E5B, CC_SEP},
    {0x10FB, 0x10FB, CC_SEP},       /* Georgian paragraph separator */
    {0x1360, 0x1368, CC_SEP},       /* Ethiopic punctuation */
    {0x166D, 0x166E, CC_SEP},
    {0x1680, 0x1680, CC_SEP},       /* Ogham space */
    {0x169B, 0x169C, CC_SEP},
    {0x16EB, 0x16ED, CC_SEP},
    {0x1AB0, 0x1AFF, CC_MARK},      /* combining diacritics extended */
    {0x1C80, 0x1C8F, CC_CYRILLIC},  /* Cyrillic Extended-C */
    {0x1DC0, 0x1DFF, CC_MARK},      /* combining diacritics supplement */
    {0x1E00, 0x1EFF, CC_LATIN},     /* Latin Extended Additional */
    {0x2000, 0x200B, CC_SEP},       /* spaces, zero-width space */
    {0x200C, 0x200D, CC_MARK},      /* zero-width (non-)joiner */
    {0x200E, 0x205F, CC_SEP},       /* marks, dashes, quotes, general punctuation */
    {0x2060, 0x2060, CC_MARK},      /* word joiner */
    {0x2061, 0x20CF, CC_SEP},       /* invisible operators, super/subscripts, currency */
    {0x20D0, 0x20FF, CC_MARK},      /* combining marks for symbols */
    {0x2100, 0x2BFF, CC_SEP},       /* letterlike, numbers, arrows, maths, boxes, dingbats */
    {0x2C60, 0x2C7F, CC_LATIN},     /* Latin Extended-C */
    {0x2DE0, 0x2DFF, CC_MARK},      /* Cyrillic Extended-A: combining letters */
    {0x2E00, 0x2FFF, CC_SEP},       /* supplemental punctuation, CJK radicals */
    {0x3000, 0x3004, CC_SEP},       /* CJK space and punctuation (々〆〇 are letters) */
    {0x3008, 0x3020, CC_SEP},
    {0x3030, 0x3030, CC_SEP},
    {0x303D, 0x303F, CC_SEP},
    {0x30FB, 0x30FB, CC_SEP},       /* katakana middle dot */
    {0xA640, 0xA66E, CC_CYRILLIC},  /* Cyrillic Extended-B */
    {0xA66F, 0xA67F, CC_MARK},
    {0xA680, 0xA69D, CC_CYRILLIC},
    {0xA69E, 0xA69F, CC_MARK},
    {0xA720, 0xA7FF, CC_LATIN},     /* Latin Extended-D */
    {0xAB30, 0xAB6F, CC_LATIN},     /* Latin Extended-E */
    {0xD800, 0xF8FF, CC_SEP},       /* surrogates, private use */
    {0xFB00, 0xFB06, CC_LATIN},     /* ﬁ ﬂ ligatures */
    {0xFD3E, 0xFD3F, CC_SEP},
    {0xFE00, 0xFE0F, CC_MARK},      /* variation selectors */
    {0xFE10, 0xFE1F, CC_SEP},
    {0xFE20, 0xFE2F, CC_MARK},      /* combining half marks */
    {0xFE30, 0xFE6F, CC_SEP},       /* CJK compatibility forms, small forms */
    {0xFEFF, 0xFF0F, CC_SEP},       /* byte order mark, fullwidth punctuation */
    {0xFF1A, 0xFF20, CC_SEP},
    {0xFF21, 0xFF3A, CC_LATIN},     /* fullwidth Latin */
    {0xFF3B, 0xFF40, CC_SEP},
    {0xFF41, 0xFF5A, CC_LATIN},
    {0xFF5B, 0xFF65, CC_SEP},
    {0xFFE0, 0xFFFF, CC_SEP},       /* fullwidth symbols, specials */
    {0x1D000, 0x1D24F, CC_SEP},     /* musical symbols */
    {0x1D300, 0x1D37F, CC_SEP},
    {0x1F000, 0x1FBFF, CC_SEP},     /* game symbols, enclosed, emoji, pictographs */
    {0xE0000, 0xE007F, CC_SEP},     /* tags (emoji flags) */
    {0xE0100, 0xE01EF, CC_MARK},    /* variation selectors supplement */
    {0xF0000, 0x10FFFF, CC_SEP},    /* private use planes */
};

static char_class_t
s_class (int32_t cp)
{
    if (cp < 0)
        return CC_SEP;
    if (cp < 0x80) {
        if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z'))
            return CC_LATIN;
        return cp >= '0' && cp <= '9' ? CC_OTHER : CC_SEP;
    }
    size_t lo = 0, hi = sizeof s_ranges / sizeof s_ranges[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if ((uint32_t) cp > s_ranges[mid].hi)
            lo = mid + 1;
        else if ((uint32_t) cp < s_ranges[mid].lo)
            hi = mid;
        else
            return s_ranges[mid].cls;
    }
    return CC_OTHER;
}

/*  Lower case for ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic
    (with the letters of the other languages of Russia); «ё» and the
    stress-marked «ѐ», «ѝ» fold to «е», «и», as people type them. */
static int32_t
s_lower (int32_t cp)
{
    if (cp < 0x80)
        return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
    if ((cp >= 0xC0 && cp <= 0xDE && cp != 0xD7) || (cp >= 0x391 && cp <= 0x3AB && cp != 0x3A2)
        || (cp >= 0x410 && cp <= 0x42F))
        return cp + 32;
    if (cp == 0x130)
        return 'i';
    if ((cp >= 0x100 && cp <= 0x137) || (cp >= 0x14A && cp <= 0x177) || (cp >= 0x460 && cp <= 0x481)
        || (cp >= 0x48A && cp <= 0x4BF) || (cp >= 0x4D0 && cp <= 0x52F))
        return cp | 1; /* pairs: upper case even, lower case odd */
    if ((cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17E) || (cp >= 0x4C1 && cp <= 0x4CE))
        return cp & 1 ? cp + 1 : cp; /* pairs: upper case odd */
    if (cp == 0x178)
        return 0xFF; /* Ÿ */
    if (cp == 0x4C0)
        return 0x4CF; /* Ӏ */
    if (cp >= 0x400 && cp <= 0x40F)
        cp += 0x50; /* Ѐ..Џ */
    if (cp == 0x451 || cp == 0x450)
        return 0x435; /* ё ѐ -> е */
    if (cp == 0x45D)
        return 0x438; /* ѝ -> и */
    return cp;
}

/*  Decodes the character at s[0..n). Returns its length in bytes; *cp gets
    the code point, or -1 for a byte that does not start a valid sequence
    (a stray continuation byte, an overlong form, a surrogate, a code point
    past U+10FFFF, a sequence cut short): such a byte is skipped alone. */
static size_t
s_utf8_decode (const unsigned char *s, size_t n, int32_t *cp)
{
    unsigned char c = s[0];
    size_t len;
    int32_t value;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        value = c & 0x1F;
    }
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        value = c & 0x0F;
    }
    else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        value = c & 0x07;
    }
    else {
        *cp = -1;
        return 1;
    }
    if (len > n) {
        *cp = -1;
        return 1;
    }
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80) {
            *cp = -1;
            return 1;
        }
        value = (value << 6) | (s[k] & 0x3F);
    }
    if ((len == 3 && value < 0x800) || (len == 4 && (value < 0x10000 || value > 0x10FFFF))
        || (value >= 0xD800 && value <= 0xDFFF)) {
        *cp = -1;
        return 1;
    }
    *cp = value;
    return len;
}

static size_t
s_utf8_encode (int32_t cp, unsigned char *out)
{
    if (cp < 0x80) {
        out[0] = (unsigned char) cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char) (0xC0 | (cp >> 6));
        out[1] = (unsigned char) (0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char) (0xE0 | (cp >> 12));
        out[1] = (unsigned char) (0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char) (0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char) (0xF0 | (cp >> 18));
    out[1] = (unsigned char) (0x80 | ((cp >> 12) & 0x3F));
    out[2] = (unsigned char) (0x80 | ((cp >> 6) & 0x3F));
    out[3] = (unsigned char) (0x80 | (cp & 0x3F));
    return 4;
}

/*  Finds the next word in text[*pos..len): it starts with a letter or a
    digit and runs on through letters, digits and marks. Returns 1 with the
    word in text[*start..*end) and *pos after it, or 0 when none is left. */
static int
s_word_next (const unsigned char *text, size_t len, size_t *pos, size_t *start, size_t *end)
{
    size_t i = *pos;
    int in_word = 0;
    while (i < len) {
        int32_t cp;
        size_t n = s_utf8_decode (text + i, len - i, &cp);
        char_class_t cls = s_class (cp);
        if (!in_word) {
            if (cls != CC_SEP && cls != CC_MARK) {
                in_word = 1;
                *start = i;
            }
        }
        else if (cls == CC_SEP)
            break;
        i += n;
    }
    *pos = i;
    *end = i;
    return in_word;
}

/*  Cuts UTF-8 text of `len` bytes to at most `max` at a character boundary. */
static int
s_utf8_cut (const unsigned char *s, int len, int max)
{
    if (len <= max)
        return len;
    len = max;
    while (len > 0 && (s[len] & 0xC0) == 0x80)
        len--;
    return len;
}

typedef struct {
    struct sb_stemmer *russian;
    struct sb_stemmer *english;
} fts_tokenizer_t;

static void
s_tokenizer_delete (Fts5Tokenizer *tokenizer)
{
    fts_tokenizer_t *self = (fts_tokenizer_t *) tokenizer;
    if (self) {
        sb_stemmer_delete (self->russian);
        sb_stemmer_delete (self->english);
        free (self);
    }
}

/*  FTS5 creates one tokenizer per table per connection, and a connection is
    used by one thread at a time, so each instance owns its stemmers: a
    Snowball stemmer keeps its state (and its result) in the object. */
static int
s_tokenizer_create (void *context, const char **args, int nargs, Fts5Tokenizer **out)
{
    (void) context;
    (void) args;
    *out = NULL;
    if (nargs > 0)
        return SQLITE_ERROR; /* "parta" takes no options */
    fts_tokenizer_t *self = calloc (1, sizeof *self);
    if (!self)
        return SQLITE_NOMEM;
    self->russian = sb_stemmer_new ("russian", "UTF_8");
    self->english = sb_stemmer_new ("english", "UTF_8");
    if (!self->russian || !self->english) {
        s_tokenizer_delete ((Fts5Tokenizer *) self);
        return SQLITE_NOMEM;
    }
    *out = (Fts5Tokenizer *) self;
    return SQLITE_OK;
}

/*  Each word is folded into a buffer of at most CHAT_FTS_TOKEN_MAX bytes
    (the rest of a longer word is ignored, which also bounds the stemmer's
    work), stemmed, and reported with the offsets of the whole word in the
    text, marks included, so that highlight() covers what the user sees. */
static int
s_tokenizer_tokenize (Fts5Tokenizer *tokenizer, void *context, int flags, const char *text,
                      int text_len,
                      int (*token_cb) (void *, int, const char *, int, int, int))
{
    fts_tokenizer_t *self = (fts_tokenizer_t *) tokenizer;
    (void) flags;
    if (!text || text_len <= 0)
        return SQLITE_OK;
    const unsigned char *s = (const unsigned char *) text;
    size_t len = (size_t) text_len, pos = 0, start, end;
    int rc = SQLITE_OK;
    while (rc == SQLITE_OK && s_word_next (s, len, &pos, &start, &end)) {
        unsigned char word[CHAT_FTS_TOKEN_MAX];
        size_t word_len = 0, last_at = 0;
        int32_t last = 0;
        int cyrillic = 0, latin = 0;
        size_t i = start;
        while (i < end) {
            int32_t cp;
            i += s_utf8_decode (s + i, end - i, &cp);
            char_class_t cls = s_class (cp);
            if (cls == CC_MARK) {
                if (cp == 0x306 && last == 0x438) {
                    last = 0x439; /* и + combining breve: й */
                    s_utf8_encode (last, word + last_at);
                }
                continue;
            }
            int32_t lower = s_lower (cp);
            unsigned char utf8[4];
            size_t n = s_utf8_encode (lower, utf8);
            if (word_len + n > sizeof word)
                break;
            memcpy (word + word_len, utf8, n);
            last = lower;
            last_at = word_len;
            word_len += n;
            cyrillic |= cls == CC_CYRILLIC;
            latin |= cls == CC_LATIN;
        }
        const unsigned char *token = word;
        int token_len = (int) word_len;
        struct sb_stemmer *stemmer = cyrillic ? self->russian : latin ? self->english : NULL;
        if (stemmer) {
            const sb_symbol *stem = sb_stemmer_stem (stemmer, word, (int) word_len);
            if (!stem)
                return SQLITE_NOMEM;
            int stem_len = sb_stemmer_length (stemmer);
            if (stem_len > 0) {
                token = stem;
                token_len = s_utf8_cut (stem, stem_len, CHAT_FTS_TOKEN_MAX);
            }
        }
        rc = token_cb (context, 0, (const char *) token, token_len, (int) start, (int) end);
    }
    /*  FTS5 callbacks may answer SQLITE_DONE to say they have seen enough. */
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/*  The fts5_api of a connection, which FTS5 hands out through a pointer
    bound to `SELECT fts5(?1)`. NULL if FTS5 is not compiled in. */
static fts5_api *
s_fts5_api (sqlite3 *db)
{
    fts5_api *api = NULL;
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2 (db, "SELECT fts5(?1)", -1, &stmt, NULL) != SQLITE_OK)
        return NULL;
    sqlite3_bind_pointer (stmt, 1, (void *) &api, "fts5_api_ptr", NULL);
    sqlite3_step (stmt);
    sqlite3_finalize (stmt);
    return api && api->iVersion >= 2 ? api : NULL;
}

int
chat_fts_register (sqlite3 *db)
{
    fts5_api *api = s_fts5_api (db);
    if (!api) {
        log_error (NULL, "fts5 not available error=\"%s\"", sqlite3_errmsg (db));
        return -1;
    }
    fts5_tokenizer tokenizer = {s_tokenizer_create, s_tokenizer_delete, s_tokenizer_tokenize};
    int rc = api->xCreateTokenizer (api, "parta", NULL, &tokenizer, NULL);
    if (rc != SQLITE_OK) {
        log_error (NULL, "fts5 tokenizer not registered error=\"%s\"", sqlite3_errstr (rc));
        return -1;
    }
    return 0;
}

/*  Words are copied as the user typed them: the tokenizer folds and stems
    the quoted string when FTS5 parses the expression, exactly as it did the
    messages. A word holds letters, digits and marks only, never a quote, so
    quoting needs no escapes. */
char *
chat_fts_query (const char *text)
{
    if (!text)
        return NULL;
    const unsigned char *s = (const unsigned char *) text;
    size_t len = strnlen (text, CHAT_FTS_QUERY_BYTES + 1);
    int cut = len > CHAT_FTS_QUERY_BYTES;
    if (cut) {
        len = CHAT_FTS_QUERY_BYTES;
        while (len > 0 && (s[len] & 0xC0) == 0x80)
            len--;
    }
    /*  per word: two quotes and " AND " */
    char *out = malloc (len + CHAT_FTS_QUERY_WORDS * 7 + 1);
    if (!out)
        return NULL;
    size_t out_len = 0, pos = 0, start, end;
    int words = 0;
    while (words < CHAT_FTS_QUERY_WORDS && s_word_next (s, len, &pos, &start, &end)) {
        if (cut && end == len) {
            /*  the limit fell inside this word if what follows continues it */
            int32_t cp;
            s_utf8_decode (s + len, strnlen (text + len, 4), &cp);
            char_class_t cls = s_class (cp);
            if (cls != CC_SEP)
                break;
        }
        if (words) {
            memcpy (out + out_len, " AND ", 5);
            out_len += 5;
        }
        out[out_len++] = '"';
        memcpy (out + out_len, text + start, end - start);
        out_len += end - start;
        out[out_len++] = '"';
        words++;
    }
    if (words == 0) {
        free (out);
        return NULL;
    }
    out[out_len] = 0;
    return out;
}
