/*  Unit tests of chat_fts: what a search finds in a table tokenized by
    "parta" (Russian and English inflections, case, ё, marks, mixed text),
    what users can type into the search box without breaking the query, the
    limits, bad bytes in messages, and where highlight() puts its marks. Each
    test works on a fresh database in its own temporary directory. */
#include "db.h"
#include "text.h"

/*  The chat service's objects are not linked into unit tests. */
#include "../../services/chat/chat_fts.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

typedef struct {
    char dir[256];
    char path[320];
    db_t *db;
    char found[4096];
} fixture_t;

static void
s_exec (fixture_t *fx, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec (db_handle (fx->db), sql, NULL, NULL, &err) != SQLITE_OK)
        fail_msg ("%s: %s", sql, err ? err : "?");
}

static int
s_teardown (void **state)
{
    fixture_t *fx = *state;
    db_destroy (&fx->db);
    DIR *d = opendir (fx->dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir (d)) != NULL) {
            if (strcmp (e->d_name, ".") == 0 || strcmp (e->d_name, "..") == 0)
                continue;
            char file[600];
            snprintf (file, sizeof file, "%s/%s", fx->dir, e->d_name);
            unlink (file);
        }
        closedir (d);
    }
    int rc = rmdir (fx->dir);
    free (fx);
    return rc;
}

static int
s_setup (void **state)
{
    fixture_t *fx = calloc (1, sizeof *fx);
    if (!fx)
        return -1;
    const char *tmp = getenv ("TMPDIR");
    snprintf (fx->dir, sizeof fx->dir, "%s/parta-fts-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp (fx->dir)) {
        free (fx);
        return -1;
    }
    snprintf (fx->path, sizeof fx->path, "%s/chat.db", fx->dir);
    char err[256] = "";
    fx->db = db_open (fx->path, NULL, "normal", err, sizeof err);
    if (!fx->db) {
        fprintf (stderr, "db_open: %s\n", err);
        rmdir (fx->dir);
        free (fx);
        return -1;
    }
    *state = fx;
    if (chat_fts_register (db_handle (fx->db)) != 0
        || sqlite3_exec (db_handle (fx->db),
                         "CREATE VIRTUAL TABLE t USING fts5(body, tokenize='parta')", NULL, NULL,
                         NULL)
               != SQLITE_OK) {
        s_teardown (state);
        return -1;
    }
    return 0;
}

/*  Inserts a message as bytes (they need not be valid UTF-8). */
static void
s_insert_bytes (fixture_t *fx, int rowid, const char *body, int len)
{
    sqlite3_stmt *stmt = NULL;
    sqlite3 *h = db_handle (fx->db);
    if (sqlite3_prepare_v2 (h, "INSERT INTO t (rowid, body) VALUES (?1, ?2)", -1, &stmt, NULL)
        != SQLITE_OK)
        fail_msg ("prepare: %s", sqlite3_errmsg (h));
    sqlite3_bind_int (stmt, 1, rowid);
    sqlite3_bind_text (stmt, 2, body, len, SQLITE_TRANSIENT);
    int rc = sqlite3_step (stmt);
    sqlite3_finalize (stmt);
    if (rc != SQLITE_DONE)
        fail_msg ("insert %d: %s", rowid, sqlite3_errmsg (h));
}

static void
s_insert (fixture_t *fx, int rowid, const char *body)
{
    s_insert_bytes (fx, rowid, body, -1);
}

/*  Runs `sql` with ?1 bound to `match` and joins the first column of the
    rows with spaces into fx->found. Any sqlite error fails the test. */
static const char *
s_rows (fixture_t *fx, const char *sql, const char *match)
{
    sqlite3_stmt *stmt = NULL;
    sqlite3 *h = db_handle (fx->db);
    if (sqlite3_prepare_v2 (h, sql, -1, &stmt, NULL) != SQLITE_OK)
        fail_msg ("prepare %s: %s", sql, sqlite3_errmsg (h));
    if (match)
        sqlite3_bind_text (stmt, 1, match, -1, SQLITE_TRANSIENT);
    size_t n = 0;
    fx->found[0] = 0;
    int rc;
    while ((rc = sqlite3_step (stmt)) == SQLITE_ROW) {
        const char *value = (const char *) sqlite3_column_text (stmt, 0);
        n += (size_t) snprintf (fx->found + n, sizeof fx->found - n, "%s%s", n ? " " : "",
                                value ? value : "");
        assert_true (n < sizeof fx->found);
    }
    if (rc != SQLITE_DONE)
        fail_msg ("%s with %s: %s", sql, match ? match : "-", sqlite3_errmsg (h));
    sqlite3_finalize (stmt);
    return fx->found;
}

/*  The rows a user finds by typing `typed` into the search box. */
static const char *
s_search (fixture_t *fx, const char *typed)
{
    char *match = chat_fts_query (typed);
    if (!match)
        fail_msg ("no query from \"%s\"", typed);
    s_rows (fx, "SELECT rowid FROM t WHERE t MATCH ?1 ORDER BY rowid", match);
    free (match);
    return fx->found;
}

static const char *
s_highlight (fixture_t *fx, const char *typed)
{
    char *match = chat_fts_query (typed);
    if (!match)
        fail_msg ("no query from \"%s\"", typed);
    s_rows (fx, "SELECT highlight(t, 0, '[', ']') FROM t WHERE t MATCH ?1 ORDER BY rowid", match);
    free (match);
    return fx->found;
}

/*  The terms in the index, sorted. */
static const char *
s_terms (fixture_t *fx)
{
    s_exec (fx, "CREATE VIRTUAL TABLE IF NOT EXISTS terms USING fts5vocab(t, 'row')");
    return s_rows (fx, "SELECT term FROM terms ORDER BY term", NULL);
}

static void
test_russian_inflections (void **state)
{
    fixture_t *fx = *state;
    s_insert (fx, 1, "Завтра уроки начинаются в 9:00");
    s_insert (fx, 2, "Домашнее задание по итогам уроков");
    s_insert (fx, 3, "Уроками физкультуры займёмся в зале");
    s_insert (fx, 4, "Доброе утро всем!");
    s_insert (fx, 5, "Занятия кружка отменены");
    s_insert (fx, 6, "УРОК перенесли");

    assert_string_equal (s_search (fx, "урок"), "1 2 3 6");
    assert_string_equal (s_search (fx, "Уроки"), "1 2 3 6");
    assert_string_equal (s_search (fx, "утро"), "4");
    assert_string_equal (s_search (fx, "занятие"), "5");
    assert_string_equal (s_search (fx, "ЗАНЯТИЯМИ"), "5");
    assert_string_equal (s_search (fx, "займемся"), "3");
    assert_string_equal (s_search (fx, "урок зал"), "3");
    assert_string_equal (s_search (fx, "физика"), "");
}

static void
test_english_inflections (void **state)
{
    fixture_t *fx = *state;
    s_insert (fx, 1, "Lessons start tomorrow");
    s_insert (fx, 2, "One lesson only, then running practice");
    s_insert (fx, 3, "Less is more");
    s_insert (fx, 4, "LESSON PLAN attached");

    assert_string_equal (s_search (fx, "lesson"), "1 2 4");
    assert_string_equal (s_search (fx, "Lessons"), "1 2 4");
    assert_string_equal (s_search (fx, "run"), "2");
    assert_string_equal (s_search (fx, "started"), "1");
    assert_string_equal (s_search (fx, "less"), "3");
}

/*  What the index holds: folded, stemmed, one term per stem. */
static void
test_tokens (void **state)
{
    fixture_t *fx = *state;
    s_insert (fx, 1, "Уроками, УРОКИ и уроков; Lessons lessons. 9А 2024 ΑΛΦΑ");
    assert_string_equal (s_terms (fx), "2024 9а lesson αλφα и урок");
}

static void
test_mixed_text (void **state)
{
    fixture_t *fx = *state;
    s_insert (fx, 1, "Завтра lessons по Math и урок пения в 9А");
    s_insert (fx, 2, "Math olympiad results");
    s_insert (fx, 3, "Урок математики");

    assert_string_equal (s_search (fx, "урок lesson"), "1");
    assert_string_equal (s_search (fx, "math"), "1 2");
    assert_string_equal (s_search (fx, "MATH уроки"), "1");
    assert_string_equal (s_search (fx, "9а"), "1");
    assert_string_equal (s_search (fx, "9А"), "1");
    assert_string_equal (s_search (fx, "урок"), "1 3");
}

static void
test_yo (void **state)
{
    fixture_t *fx = *state;
    s_insert (fx, 1, "Ёлка в актовом зале");
    s_insert (fx, 2, "Купили елки для классов");
    s_insert (fx, 3, "ЁЛОЧНЫЕ игрушки");

    assert_string_equal (s_search (fx, "Ёлка"), "1 2");
    assert_string_equal (s_search (fx, "елки"), "1 2");
    assert_string_equal (s_search (fx, "ЕЛКА"), "1 2");
    assert_string_equal (s_search (fx, "ёлочные"), "3");
}

/*  A stress mark, a soft hyphen, a decomposed «й» or «ё» inside a word do
    not keep it from matching the word typed plainly, and the other way. */
static void
test_marks (void **state)
{
    fixture_t *fx = *state;
    s_insert (fx, 1, "На уро\xcc\x81ках повторяем");         /* уро́ках */
    s_insert (fx, 2, "Новый ча\xd0\xb8\xcc\x86ник в учительской"); /* и + breve */
    s_insert (fx, 3, "Е\xcc\x88лка во дворе");                /* Е + diaeresis */
    s_insert (fx, 4, "Дистан\xc2\xadционка");                  /* soft hyphen */

    assert_string_equal (s_search (fx, "урок"), "1");
    assert_string_equal (s_search (fx, "чайник"), "2");
    assert_string_equal (s_search (fx, "елка"), "3");
    assert_string_equal (s_search (fx, "дистанционка"), "4");
    assert_string_equal (s_search (fx, "уро\xcc\x81ки"), "1");

    /*  a mark with no word before it is not a word */
    assert_null (chat_fts_query ("\xcc\x81 \xc2\xad"));
}

static void
test_no_words (void **state)
{
    (void) state;
    assert_null (chat_fts_query (NULL));
    assert_null (chat_fts_query (""));
    assert_null (chat_fts_query ("   \t\n"));
    assert_null (chat_fts_query ("?!...,;:-()[]{}\"'*^+"));
    assert_null (chat_fts_query ("«» — … № ©"));
    assert_null (chat_fts_query ("\xf0\x9f\x91\x8d\xf0\x9f\x8e\x84")); /* 👍🎄 */
    assert_null (chat_fts_query ("*"));
    assert_null (chat_fts_query ("\""));
    assert_null (chat_fts_query ("\xff\xfe\x80"));
}

/*  FTS5 syntax typed by a user is words, nothing more: no sqlite error, and
    the search finds the words. */
static void
test_syntax_is_words (void **state)
{
    fixture_t *fx = *state;
    s_insert (fx, 1, "урок или x");
    s_insert (fx, 2, "урок or x");
    s_insert (fx, 3, "near a b");
    s_insert (fx, 4, "body урок");
    s_insert (fx, 5, "урок");

    char *match = chat_fts_query ("урок\" OR \"x");
    assert_string_equal (match, "\"урок\" AND \"OR\" AND \"x\"");
    free (match);
    assert_string_equal (s_search (fx, "урок\" OR \"x"), "2");

    match = chat_fts_query ("NEAR(a b)");
    assert_string_equal (match, "\"NEAR\" AND \"a\" AND \"b\"");
    free (match);
    assert_string_equal (s_search (fx, "NEAR(a b)"), "3");
    assert_string_equal (s_search (fx, "NEAR(a b, 5)"), "");

    assert_string_equal (s_search (fx, "body:урок"), "4");
    assert_string_equal (s_search (fx, "{body}: урок"), "4");
    assert_string_equal (s_search (fx, "-body урок"), "4");
    assert_string_equal (s_search (fx, "^урок*"), "1 2 4 5");
    assert_string_equal (s_search (fx, "урок NOT x"), "");
    assert_string_equal (s_search (fx, "(урок AND"), "");
    assert_string_equal (s_search (fx, "\"\"\"урок\"\"\""), "1 2 4 5");
    assert_string_equal (s_search (fx, "урок + or"), "2");
    assert_string_equal (s_search (fx, "rowid = 5; DROP TABLE t; урок"), "");
    assert_string_equal (s_search (fx, "урок"), "1 2 4 5");
}

static void
test_query_limits (void **state)
{
    fixture_t *fx = *state;
    s_insert (fx, 1, "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12 w13 w14 w15 w16");

    /*  20 words: the first 16 are kept */
    char *match = chat_fts_query ("w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12 w13 w14 w15 w16 "
                                  "w17 w18 w19 w20");
    assert_non_null (match);
    assert_non_null (strstr (match, "\"w16\""));
    assert_null (strstr (match, "w17"));
    free (match);
    assert_string_equal (s_search (fx, "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12 w13 w14 w15 w16 "
                                       "w17 w18 w19 w20"),
                         "1");

    /*  only the first CHAT_FTS_QUERY_BYTES bytes count; a word the limit
        cuts is dropped */
    enum { L = CHAT_FTS_QUERY_BYTES };
    char text[2 * L];
    memset (text, ' ', sizeof text);
    memcpy (text, "урок", strlen ("урок"));
    memcpy (text + L - 4, "абвгд", strlen ("абвгд")); /* over bytes L-4..L+5 */
    memcpy (text + L + 88, "поздно", strlen ("поздно"));
    text[sizeof text - 1] = 0;
    match = chat_fts_query (text);
    assert_string_equal (match, "\"урок\"");
    free (match);

    /*  a word that ends right at the limit is whole and kept */
    memset (text, ' ', sizeof text);
    memcpy (text + L - 8, "урок", strlen ("урок"));  /* bytes L-8..L-1 */
    memcpy (text + L + 1, "x", 1);
    text[sizeof text - 1] = 0;
    match = chat_fts_query (text);
    assert_string_equal (match, "\"урок\"");
    free (match);

    /*  the limit falls inside a two-byte letter: the word is still dropped */
    memset (text, ' ', sizeof text);
    memcpy (text, "a", 1);
    memcpy (text + L - 7, "урок", strlen ("урок")); /* bytes L-7..L */
    text[sizeof text - 1] = 0;
    match = chat_fts_query (text);
    assert_string_equal (match, "\"a\"");
    free (match);

    /*  a query is never longer than its input allows */
    char long_words[2000];
    size_t n = 0;
    while (n + 3 < sizeof long_words) {
        memcpy (long_words + n, "я ", 3);
        n += 3;
    }
    long_words[n] = 0;
    match = chat_fts_query (long_words);
    assert_non_null (match);
    assert_true (strlen (match) < CHAT_FTS_QUERY_BYTES + CHAT_FTS_QUERY_WORDS * 7);
    free (match);
}

/*  Tokens are cut at 64 bytes on a character boundary: two long words that
    share their first 64 bytes are the same token, and every term is valid
    UTF-8. */
static void
test_long_words (void **state)
{
    fixture_t *fx = *state;
    char one[512] = "", two[512] = "x", three[4096] = "";
    for (int i = 0; i < 40; i++)
        strcat (one, "ы");
    strcat (two, one); /* 1 + 80 bytes: the cut is not on an even byte */
    strcat (one, "конец");
    for (int i = 0; i < 1000; i++)
        strcat (three, "abc");

    s_insert (fx, 1, one);
    s_insert (fx, 2, two);
    s_insert (fx, 3, three);
    s_insert (fx, 4, "короткое слово");

    const char *terms = s_terms (fx);
    char copy[4096];
    snprintf (copy, sizeof copy, "%s", terms);
    int count = 0;
    for (char *save = NULL, *term = strtok_r (copy, " ", &save); term;
         term = strtok_r (NULL, " ", &save)) {
        assert_true (strlen (term) <= CHAT_FTS_TOKEN_MAX);
        assert_true (text_utf8_valid (term, strlen (term)));
        count++;
    }
    assert_int_equal (count, 5);

    assert_string_equal (s_search (fx, one), "1");
    assert_string_equal (s_search (fx, two), "2");
    /*  the query reads 512 bytes of what was typed: a longer word is cut
        there, so it is dropped; its first 300 bytes find the message */
    assert_null (chat_fts_query (three));
    three[300] = 0;
    assert_string_equal (s_search (fx, three), "3");
    /*  32 letters «ы» are 64 bytes: anything after them is past the cut */
    char prefix[256] = "";
    for (int i = 0; i < 32; i++)
        strcat (prefix, "ы");
    strcat (prefix, "другое");
    assert_string_equal (s_search (fx, prefix), "1");
    assert_string_equal (s_search (fx, "слово"), "4");
}

/*  Bytes that are not UTF-8 separate words; nothing crashes, the words
    around them are found and highlighted. */
static void
test_invalid_utf8 (void **state)
{
    fixture_t *fx = *state;
    const char body[] = "\xff\xfe урок\x80ки \xc3 \xe0\x80\x80x \xed\xa0\x80 \xf4\x90\x80\x80"
                        "\xc0\xaf занятия \xf0\x9f\x91 \xd0";
    s_insert_bytes (fx, 1, body, (int) sizeof body - 1);
    s_insert_bytes (fx, 2, "\xd0", 1);
    s_insert_bytes (fx, 3, "\xe2\x82", 2);

    assert_string_equal (s_search (fx, "урок"), "1");
    assert_string_equal (s_search (fx, "ки"), "1");
    assert_string_equal (s_search (fx, "занятие"), "1");
    assert_string_equal (s_search (fx, "x"), "1");
    char *match = chat_fts_query ("\xff урок\xfe\xc3");
    assert_string_equal (match, "\"урок\"");
    free (match);

    s_highlight (fx, "занятия");
    assert_non_null (strstr (fx->found, "[занятия]"));
}

static void
test_highlight_offsets (void **state)
{
    fixture_t *fx = *state;
    s_insert (fx, 1, "Завтра Уроки, а потом — уроков нет.");
    s_insert (fx, 2, "«Уро\xcc\x81к» начнётся в 9:00");
    s_insert (fx, 3, "Two Lessons; one lesson’s plan");
    s_insert (fx, 4, "👍урок👍");

    assert_string_equal (s_highlight (fx, "урок"),
                         "Завтра [Уроки], а потом — [уроков] нет. "
                         "«[Уро\xcc\x81к]» начнётся в 9:00 "
                         "👍[урок]👍");
    assert_string_equal (s_highlight (fx, "lesson"), "Two [Lessons]; one [lesson]’s plan");
    assert_string_equal (s_highlight (fx, "начнется"), "«Уро\xcc\x81к» [начнётся] в 9:00");
}

/*  Registering again is harmless; an option the tokenizer does not know is
    an error, not a table with a different tokenizer. */
static void
test_register (void **state)
{
    fixture_t *fx = *state;
    sqlite3 *h = db_handle (fx->db);
    assert_int_equal (chat_fts_register (h), 0);
    s_insert (fx, 1, "уроки");
    assert_string_equal (s_search (fx, "урок"), "1");

    char *err = NULL;
    assert_int_not_equal (
        sqlite3_exec (h, "CREATE VIRTUAL TABLE u USING fts5(body, tokenize='parta ascii')", NULL,
                      NULL, &err),
        SQLITE_OK);
    sqlite3_free (err);

    /*  a second connection needs the tokenizer too, and then reads the index */
    sqlite3 *other = NULL;
    assert_int_equal (sqlite3_open (fx->path, &other), SQLITE_OK);
    assert_int_not_equal (sqlite3_exec (other, "SELECT * FROM t WHERE t MATCH 'x'", NULL, NULL, NULL),
                          SQLITE_OK);
    assert_int_equal (chat_fts_register (other), 0);
    sqlite3_stmt *stmt = NULL;
    assert_int_equal (
        sqlite3_prepare_v2 (other, "SELECT rowid FROM t WHERE t MATCH '\"уроками\"'", -1, &stmt, NULL),
        SQLITE_OK);
    assert_int_equal (sqlite3_step (stmt), SQLITE_ROW);
    assert_int_equal (sqlite3_column_int (stmt, 0), 1);
    sqlite3_finalize (stmt);
    sqlite3_close (other);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown (test_russian_inflections, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_english_inflections, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_tokens, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_mixed_text, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_yo, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_marks, s_setup, s_teardown),
        cmocka_unit_test (test_no_words),
        cmocka_unit_test_setup_teardown (test_syntax_is_words, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_query_limits, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_long_words, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_invalid_utf8, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_highlight_offsets, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_register, s_setup, s_teardown),
    };
    return cmocka_run_group_tests_name ("fts", tests, NULL, NULL);
}
