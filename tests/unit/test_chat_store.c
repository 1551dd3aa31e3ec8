/*  The chat store keeps what a message said before each edit and before
    its deletion (for the audit), and search forgets the old words; the
    roster an automatic chat follows counts only people holding the role. */
#include "arena.h"
#include "db.h"

#include "../../services/chat/chat_fts.h"
#include "../../services/chat/chat_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

typedef struct {
    char dir[64];
    char path[128];
    db_t *db;
} fixture_t;

static int
s_setup (void **state)
{
    fixture_t *fx = calloc (1, sizeof *fx);
    snprintf (fx->dir, sizeof fx->dir, "/tmp/parta-chat-store-XXXXXX");
    if (!mkdtemp (fx->dir))
        return -1;
    snprintf (fx->path, sizeof fx->path, "%s/chat.db", fx->dir);
    db_set_open_hook (chat_fts_register);
    char err[256];
    fx->db = db_open (fx->path, chatstore_migrations, "normal", err, sizeof err);
    if (!fx->db) {
        fprintf (stderr, "db_open: %s\n", err);
        return -1;
    }
    *state = fx;
    return 0;
}

static int
s_teardown (void **state)
{
    fixture_t *fx = *state;
    db_destroy (&fx->db);
    char cmd[128];
    snprintf (cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
    if (system (cmd) != 0)
        fprintf (stderr, "could not remove %s\n", fx->dir);
    free (fx);
    return 0;
}

/*  The history rows of a message, oldest first, as "text|by|deleted;". */
static void
s_history (db_t *db, const char *id, char *out, size_t len)
{
    out[0] = 0;
    sqlite3_stmt *stmt = db_stmt (db, "SELECT text, changed_by, deleted FROM message_history"
                                      " WHERE message_id = ? ORDER BY rowid");
    assert_non_null (stmt);
    sqlite3_bind_text (stmt, 1, id, -1, SQLITE_STATIC);
    while (sqlite3_step (stmt) == SQLITE_ROW) {
        size_t used = strlen (out);
        snprintf (out + used, len - used, "%s|%s|%d;", sqlite3_column_text (stmt, 0),
                  sqlite3_column_text (stmt, 1), sqlite3_column_int (stmt, 2));
    }
    sqlite3_reset (stmt);
}

static int
s_found (db_t *db, const char *word)
{
    sqlite3_stmt *stmt = db_stmt (db, "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH ?");
    assert_non_null (stmt);
    sqlite3_bind_text (stmt, 1, word, -1, SQLITE_STATIC);
    assert_int_equal (sqlite3_step (stmt), SQLITE_ROW);
    int n = sqlite3_column_int (stmt, 0);
    sqlite3_reset (stmt);
    return n;
}

static void
test_edit_and_delete_keep_the_old_text (void **state)
{
    fixture_t *fx = *state;
    const char *id = "01JMSG0000000000000000000A";
    assert_int_equal (chatstore_message_insert (fx->db, id, "01JCHAT000000000000000000A", 1,
                                                "author", "урок в среду", NULL, NULL, 1000),
                      0);
    assert_int_equal (chatstore_message_edit (fx->db, id, "урок в среду", "занятие в пятницу",
                                              "author", 2000),
                      0);
    char history[512];
    s_history (fx->db, id, history, sizeof history);
    assert_string_equal (history, "урок в среду|author|0;");
    assert_int_equal (s_found (fx->db, "урок"), 0);
    assert_int_equal (s_found (fx->db, "пятницу"), 1);

    assert_int_equal (chatstore_message_delete (fx->db, id, "moderator", 3000), 0);
    s_history (fx->db, id, history, sizeof history);
    assert_string_equal (history, "урок в среду|author|0;занятие в пятницу|moderator|1;");
    assert_int_equal (s_found (fx->db, "пятницу"), 0);

    arena_t *arena = arena_new ();
    Chat__Message *msg = NULL;
    message_head_t head;
    assert_int_equal (chatstore_message_get (fx->db, "01JCHAT000000000000000000A", id, arena, &msg,
                                             &head),
                      1);
    assert_int_equal (head.deleted, 1);
    assert_string_equal (msg->text, "");
    arena_destroy (&arena);
}

/*  Who a roster chat should have, as "user:role," sorted by user. */
static void
s_want (void *arg, const char *user_id, int role)
{
    char *out = arg;
    size_t used = strlen (out);
    snprintf (out + used, 512 - used, "%s:%d,", user_id, role);
}

static void
s_desired (db_t *db, const chat_t *chat, char *out)
{
    char raw[512] = "";
    assert_int_equal (chatstore_desired (db, chat, s_want, raw), 0);
    /*  Sort the entries so that the order of the rows does not matter. */
    char *items[16];
    int n = 0;
    for (char *t = strtok (raw, ","); t && n < 16; t = strtok (NULL, ","))
        items[n++] = t;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (strcmp (items[j], items[i]) < 0) {
                char *x = items[i];
                items[i] = items[j];
                items[j] = x;
            }
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        strcat (out, items[i]);
        strcat (out, ",");
    }
}

/*  A roster counts only people who hold the matching role now: org says
    who is in the group, who curates it and who is whose guardian, identity
    says who holds which role, and the two arrive separately. Whatever has
    arrived so far, the members follow from it alone. */
static void
test_roster_counts_role_holders (void **state)
{
    fixture_t *fx = *state;
    db_t *db = fx->db;
    const char *org = "01JORG0000000000000000000A";
    unit_t g = {.id = "01JUNIT000000000000000000G", .org_id = "01JORG0000000000000000000A",
                .kind = 2, .name = "Повара", .curator_id = "T"};
    chat_t students = {.id = "01JCHAT00000000000000000ST", .org_id = "01JORG0000000000000000000A",
                       .unit_id = "01JUNIT000000000000000000G", .audience = CHAT__AUDIENCE__AUDIENCE_STUDENTS};
    chat_t parents = students;
    parents.audience = CHAT__AUDIENCE__AUDIENCE_PARENTS;
    chat_t subject = students;
    snprintf (subject.created_by, sizeof subject.created_by, "T");
    char got[512];

    /*  Org's facts first: nobody holds a role yet, so nobody is in. */
    assert_int_equal (chatstore_unit_put (db, &g), 0);
    assert_int_equal (chatstore_unit_member_put (db, g.id, "S", 4, 1), 0);
    assert_int_equal (chatstore_guardian_put (db, org, "P", "S", 1), 0);
    s_desired (db, &students, got);
    assert_string_equal (got, "");
    s_desired (db, &parents, got);
    assert_string_equal (got, "");

    /*  Roles arrive one by one. */
    assert_int_equal (chatstore_role_put (db, org, "S", 4, 1), 0);
    s_desired (db, &students, got);
    assert_string_equal (got, "S:3,");
    s_desired (db, &parents, got);
    assert_string_equal (got, "");
    assert_int_equal (chatstore_role_put (db, org, "P", 5, 1), 0);
    s_desired (db, &parents, got);
    assert_string_equal (got, "P:3,");
    assert_int_equal (chatstore_role_put (db, org, "T", 3, 1), 0);
    s_desired (db, &students, got);
    assert_string_equal (got, "S:3,T:1,");
    s_desired (db, &parents, got);
    assert_string_equal (got, "P:3,T:1,");
    /*  A hand-made chat following the group has no curator in it. */
    s_desired (db, &subject, got);
    assert_string_equal (got, "S:3,");
    /*  A role of another org counts for nothing here. */
    assert_int_equal (chatstore_role_put (db, org, "S", 4, 0), 0);
    assert_int_equal (chatstore_role_put (db, "01JORG0000000000000000000B", "S", 4, 1), 0);
    s_desired (db, &students, got);
    assert_string_equal (got, "T:1,");
    s_desired (db, &parents, got);
    assert_string_equal (got, "T:1,");

    /*  The units whose rosters count someone: theirs, the ones they
        curate, their children's. */
    arena_t *arena = arena_new ();
    char **ids;
    size_t n;
    const char *people[] = {"S", "T", "P"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal (chatstore_roster_units (db, org, people[i], arena, &ids, &n), 0);
        assert_int_equal (n, 1);
        assert_string_equal (ids[0], g.id);
    }
    assert_int_equal (chatstore_roster_units (db, "01JORG0000000000000000000B", "S", arena, &ids, &n), 0);
    assert_int_equal (n, 0);
    assert_int_equal (chatstore_roster_units (db, org, "X", arena, &ids, &n), 0);
    assert_int_equal (n, 0);
    arena_destroy (&arena);
}

/*  A guardian link belongs to one org: a parent linked to a student in
    another organisation (where the student also studies) is not in this
    group's parents chat, even as a parent of another child here. */
static void
test_parents_chat_takes_this_orgs_links_only (void **state)
{
    fixture_t *fx = *state;
    db_t *db = fx->db;
    const char *a = "01JORG0000000000000000000A", *b = "01JORG0000000000000000000B";
    unit_t g = {.id = "01JUNIT000000000000000000G", .org_id = "01JORG0000000000000000000A",
                .kind = 2, .name = "Г-1"};
    chat_t parents = {.id = "01JCHAT00000000000000000PA", .org_id = "01JORG0000000000000000000A",
                      .unit_id = "01JUNIT000000000000000000G",
                      .audience = CHAT__AUDIENCE__AUDIENCE_PARENTS};
    char got[512];
    assert_int_equal (chatstore_unit_put (db, &g), 0);
    assert_int_equal (chatstore_unit_member_put (db, g.id, "S", 4, 1), 0);
    assert_int_equal (chatstore_role_put (db, a, "S", 4, 1), 0);
    assert_int_equal (chatstore_role_put (db, b, "S", 4, 1), 0);
    assert_int_equal (chatstore_role_put (db, a, "P", 5, 1), 0);
    assert_int_equal (chatstore_role_put (db, b, "P", 5, 1), 0);
    /*  P is S's guardian in B only. */
    assert_int_equal (chatstore_guardian_put (db, b, "P", "S", 1), 0);
    s_desired (db, &parents, got);
    assert_string_equal (got, "");
    arena_t *arena = arena_new ();
    char **ids;
    size_t n;
    assert_int_equal (chatstore_roster_units (db, b, "P", arena, &ids, &n), 0);
    assert_int_equal (n, 0);
    /*  Linked in A too: in. */
    assert_int_equal (chatstore_guardian_put (db, a, "P", "S", 1), 0);
    s_desired (db, &parents, got);
    assert_string_equal (got, "P:3,");
    assert_int_equal (chatstore_roster_units (db, a, "P", arena, &ids, &n), 0);
    assert_int_equal (n, 1);
    arena_destroy (&arena);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown (test_edit_and_delete_keep_the_old_text, s_setup,
                                         s_teardown),
        cmocka_unit_test_setup_teardown (test_parents_chat_takes_this_orgs_links_only, s_setup,
                                         s_teardown),
        cmocka_unit_test_setup_teardown (test_roster_counts_role_holders, s_setup, s_teardown),
    };
    return cmocka_run_group_tests_name ("chat_store", tests, NULL, NULL);
}
