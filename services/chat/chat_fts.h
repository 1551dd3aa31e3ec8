/*  chat_fts: full-text search of messages. An FTS5 tokenizer, "parta", that
    reduces Russian and English words to their Snowball stems (so «урок» finds
    «уроками» and "lesson" finds "Lessons"), and the translation of what a
    user typed into a MATCH expression that FTS5 syntax cannot be smuggled in. */
#ifndef PARTA_CHAT_FTS_H
#define PARTA_CHAT_FTS_H

#include <sqlite3.h>

/*  A token is at most this many bytes (cut at a character boundary). */
#define CHAT_FTS_TOKEN_MAX 64
/*  chat_fts_query reads at most this many bytes and keeps this many words. */
#define CHAT_FTS_QUERY_BYTES 2048   /* 512 characters of up to four bytes */
#define CHAT_FTS_QUERY_WORDS 16

/*  Registers the tokenizer "parta" on a connection: words are runs of
    letters and digits (UTF-8; Cyrillic and Latin letters, digits, and the
    letters of other scripts; combining marks such as a stress mark, a soft
    hyphen or a joiner are part of the word they follow but left out of its
    token), lower-cased (ASCII, Latin-1, Cyrillic; ё as е), then stemmed with
    the Russian stemmer when the word has Cyrillic letters and the English one
    when Latin; other words are kept as they are. Tokens longer than
    CHAT_FTS_TOKEN_MAX bytes are cut. Bytes that are not valid UTF-8 separate
    words. Use it as `CREATE VIRTUAL TABLE ... USING fts5(..., tokenize='parta')`
    on every connection that reads or writes such a table. 0 or -1 (logged). */
int chat_fts_register (sqlite3 *db);

/*  Turns what a user typed into a safe FTS5 MATCH expression for a table
    tokenized by "parta": every word becomes a quoted string (so FTS5
    operators, quotes, NEAR, column filters, '*' etc. typed by users mean
    nothing), words ANDed together: `"урок" AND "OR" AND "x"`. Reads at most
    CHAT_FTS_QUERY_BYTES bytes (a word the limit cuts is dropped) and keeps the
    first CHAT_FTS_QUERY_WORDS words. Returns NULL when the text (or NULL) has
    no word at all, or when out of memory. The caller frees the result. */
char *chat_fts_query (const char *text);

#endif
