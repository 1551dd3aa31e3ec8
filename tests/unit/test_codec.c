/*  Unit tests of the JSON <-> protobuf codec (common/codec.c) on the
    codectest protos: every field kind round trips through JSON and through
    the protobuf wire, every rejection names its field and says why, and
    codec_set_text converts path and query parameters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.pb-c.h"
#include "codec.h"
#include "codectest.pb-c.h"

static arena_t *s_arena;
static char s_field[128];
static char s_err[256];

static int
s_setup (void **state)
{
    (void) state;
    s_arena = arena_new ();
    return s_arena ? 0 : -1;
}

static int
s_teardown (void **state)
{
    (void) state;
    arena_destroy (&s_arena);
    return 0;
}

/*  Decodes JSON `text` as `desc`: the message, or NULL with s_field and
    s_err set. */
static ProtobufCMessage *
s_decode (const ProtobufCMessageDescriptor *desc, const char *text)
{
    json_error_t error;
    json_t *json = json_loads (text, JSON_DECODE_ANY, &error);
    if (!json)
        fail_msg ("test JSON does not parse: %s: %s", text, error.text);
    strcpy (s_field, "<unset>");
    strcpy (s_err, "<unset>");
    ProtobufCMessage *msg = (ProtobufCMessage *) &error;    /* must be overwritten */
    int rc = codec_from_json (desc, json, s_arena, &msg, s_field, sizeof s_field, s_err,
                              sizeof s_err);
    json_decref (json);
    if (rc == 0) {
        assert_non_null (msg);
        assert_ptr_equal (msg->descriptor, desc);
        return msg;
    }
    assert_int_equal (rc, -1);
    assert_null (msg);
    return NULL;
}

/*  The compact JSON of `msg`, malloc'ed. */
static char *
s_encode (const ProtobufCMessage *msg)
{
    json_t *json = codec_to_json (msg);
    assert_non_null (json);
    char *text = json_dumps (json, JSON_COMPACT);
    json_decref (json);
    assert_non_null (text);
    return text;
}

/*  `msg` packed and unpacked again (into the arena). */
static ProtobufCMessage *
s_wire (const ProtobufCMessage *msg)
{
    size_t size = protobuf_c_message_get_packed_size (msg);
    uint8_t *buffer = malloc (size ? size : 1);
    assert_non_null (buffer);
    assert_int_equal (protobuf_c_message_pack (msg, buffer), size);
    ProtobufCMessage *copy
        = protobuf_c_message_unpack (msg->descriptor, arena_allocator (s_arena), size, buffer);
    free (buffer);
    assert_non_null (copy);
    return copy;
}

static void
s_assert_json (const ProtobufCMessage *msg, const char *expected)
{
    char *text = s_encode (msg);
    if (strcmp (text, expected) != 0)
        fail_msg ("JSON differs\n got: %s\nwant: %s", text, expected);
    free (text);
}

/*  `in` decodes; the message, its copy through the protobuf wire, and the
    decoding of `out` itself all encode as exactly `out`. */
static ProtobufCMessage *
s_round_trip (const ProtobufCMessageDescriptor *desc, const char *in, const char *out)
{
    ProtobufCMessage *msg = s_decode (desc, in);
    if (!msg)
        fail_msg ("rejected %s: field \"%s\": %s", in, s_field, s_err);
    s_assert_json (msg, out);
    s_assert_json (s_wire (msg), out);
    ProtobufCMessage *again = s_decode (desc, out);
    if (!again)
        fail_msg ("own output rejected %s: field \"%s\": %s", out, s_field, s_err);
    s_assert_json (again, out);
    return msg;
}

typedef struct {
    const char *in;
    const char *field;
    const char *err;
} rejection_t;

static void
s_reject (const ProtobufCMessageDescriptor *desc, const rejection_t *row)
{
    ProtobufCMessage *msg = s_decode (desc, row->in);
    if (msg)
        fail_msg ("accepted %s", row->in);
    if (strcmp (s_field, row->field) != 0 || strcmp (s_err, row->err) != 0)
        fail_msg ("%s\n got: field \"%s\": %s\nwant: field \"%s\": %s", row->in, s_field, s_err,
                  row->field, row->err);
}

#define REJECT_ALL(desc, rows)                                                                   \
    for (size_t i_ = 0; i_ < sizeof (rows) / sizeof (rows)[0]; i_++)                           \
    s_reject ((desc), &(rows)[i_])

/*  --- scalars --- */

static void
test_scalars_round_trip (void **state)
{
    (void) state;
    const char *in
        = "{\"i32\":-2147483648,\"s32\":2147483647,\"sf32\":-7,\"u32\":4294967295,"
          "\"f32\":4294967295,\"i64\":-9223372036854775808,\"s64\":9223372036854775807,"
          "\"sf64\":-9223372036854775808,\"u64\":9223372036854775807,\"f64\":12345678901234,"
          "\"fl\":0.5,\"db\":-2.5,\"flag\":true,\"text\":\"Привет, \\\"мир\\\"\\n\","
          "\"data\":\"AAEC/w==\",\"kind\":\"class_group\",\"status\":\"bad_request\","
          "\"item\":{\"name\":\"x\",\"count\":3,\"child\":null},"
          "\"created_at\":\"2026-11-28T09:00:00Z\",\"valid_until\":\"2026-11-28T09:00:00.250Z\","
          "\"seen_at\":\"1969-12-31T23:59:59.999Z\",\"count_at_least\":42,\"method\":\"get\"}";
    Codectest__Scalars *msg = (Codectest__Scalars *) s_round_trip (&codectest__scalars__descriptor,
                                                                  in, in);
    assert_int_equal (msg->i32, INT32_MIN);
    assert_int_equal (msg->u32, UINT32_MAX);
    assert_true (msg->i64 == INT64_MIN);
    assert_true (msg->s64 == INT64_MAX);
    assert_int_equal (msg->data.len, 4);
    assert_int_equal (msg->data.data[3], 0xff);
    assert_int_equal (msg->kind, CODECTEST__UNIT_KIND__UNIT_KIND_CLASS_GROUP);
    assert_int_equal (msg->status, CODECTEST__STATUS__BAD_REQUEST);
    assert_int_equal (msg->method, CODECTEST__HTTP2_METHOD__HTTP2_METHOD_GET);
    assert_true (msg->created_at == 1795856400000LL);
    assert_true (msg->valid_until == 1795856400250LL);
    assert_true (msg->seen_at == -1);
    assert_string_equal (msg->text, "Привет, \"мир\"\n");
}

static void
test_scalars_defaults (void **state)
{
    (void) state;
    s_round_trip (&codectest__scalars__descriptor, "{}",
                  "{\"i32\":0,\"s32\":0,\"sf32\":0,\"u32\":0,\"f32\":0,\"i64\":0,\"s64\":0,"
                  "\"sf64\":0,\"u64\":0,\"f64\":0,\"fl\":0.0,\"db\":0.0,\"flag\":false,"
                  "\"text\":\"\",\"data\":\"\",\"kind\":null,\"status\":null,\"item\":null,"
                  "\"created_at\":null,\"valid_until\":null,\"seen_at\":null,"
                  "\"count_at_least\":0,\"method\":null}");
}

/*  Accepted spellings that are not the output's: whole reals, null for
    "absent", times with an offset or a short fraction, integers for floats. */
static void
test_scalars_lenient_input (void **state)
{
    (void) state;
    Codectest__Scalars *msg = (Codectest__Scalars *) s_decode (
        &codectest__scalars__descriptor,
        "{\"i32\":5.0,\"u32\":1e3,\"i64\":-2e2,\"text\":null,\"flag\":null,\"kind\":null,"
        "\"item\":null,\"fl\":3,\"db\":7,\"created_at\":\"2026-11-28T12:00:00+03:00\","
        "\"valid_until\":\"2026-11-28t09:00:00.5z\",\"seen_at\":null}");
    assert_non_null (msg);
    assert_int_equal (msg->i32, 5);
    assert_int_equal (msg->u32, 1000);
    assert_true (msg->i64 == -200);
    assert_string_equal (msg->text, "");
    assert_true (msg->created_at == 1795856400000LL);
    assert_true (msg->valid_until == 1795856400500LL);
    s_assert_json (&msg->base,
                   "{\"i32\":5,\"s32\":0,\"sf32\":0,\"u32\":1000,\"f32\":0,\"i64\":-200,\"s64\":0,"
                   "\"sf64\":0,\"u64\":0,\"f64\":0,\"fl\":3.0,\"db\":7.0,\"flag\":false,"
                   "\"text\":\"\",\"data\":\"\",\"kind\":null,\"status\":null,\"item\":null,"
                   "\"created_at\":\"2026-11-28T09:00:00Z\","
                   "\"valid_until\":\"2026-11-28T09:00:00.500Z\",\"seen_at\":null,"
                   "\"count_at_least\":0,\"method\":null}");
}

static void
test_scalars_rejected (void **state)
{
    (void) state;
    static const rejection_t rows[] = {
        {"[]", "", "expected a JSON object"},
        {"5", "", "expected a JSON object"},
        {"\"x\"", "", "expected a JSON object"},
        {"null", "", "expected a JSON object"},
        {"{\"bogus\":1}", "bogus", "unknown field"},
        {"{\"i32\":1,\"I32\":1}", "I32", "unknown field"},
        /* integers */
        {"{\"i32\":1.5}", "i32", "expected an integer"},
        {"{\"i32\":\"1\"}", "i32", "expected an integer"},
        {"{\"i32\":true}", "i32", "expected an integer"},
        {"{\"i32\":[1]}", "i32", "expected an integer"},
        {"{\"i32\":{}}", "i32", "expected an integer"},
        {"{\"i32\":2147483648}", "i32", "out of range for int32"},
        {"{\"i32\":-2147483649}", "i32", "out of range for int32"},
        {"{\"s32\":2147483648}", "s32", "out of range for sint32"},
        {"{\"sf32\":-2147483649}", "sf32", "out of range for sfixed32"},
        {"{\"u32\":-1}", "u32", "out of range for uint32"},
        {"{\"u32\":4294967296}", "u32", "out of range for uint32"},
        {"{\"f32\":-1}", "f32", "out of range for fixed32"},
        {"{\"u64\":-1}", "u64", "out of range for uint64"},
        {"{\"f64\":-1}", "f64", "out of range for fixed64"},
        {"{\"i64\":1e19}", "i64", "out of range for int64"},
        {"{\"s64\":-1e19}", "s64", "out of range for sint64"},
        {"{\"sf64\":0.5}", "sf64", "expected an integer"},
        {"{\"i64\":\"5\"}", "i64", "expected an integer"},
        {"{\"count_at_least\":\"2026-11-28T09:00:00Z\"}", "count_at_least", "expected an integer"},
        /* floats */
        {"{\"fl\":\"1.5\"}", "fl", "expected a number"},
        {"{\"fl\":true}", "fl", "expected a number"},
        {"{\"fl\":1e39}", "fl", "out of range for float"},
        {"{\"db\":\"x\"}", "db", "expected a number"},
        {"{\"db\":[]}", "db", "expected a number"},
        /* bool */
        {"{\"flag\":1}", "flag", "expected true or false"},
        {"{\"flag\":\"true\"}", "flag", "expected true or false"},
        /* string */
        {"{\"text\":5}", "text", "expected a string"},
        {"{\"text\":true}", "text", "expected a string"},
        {"{\"text\":[\"a\"]}", "text", "expected a string"},
        {"{\"text\":{}}", "text", "expected a string"},
        /* bytes */
        {"{\"data\":\"QQ\"}", "data", "expected standard base64 with padding"},
        {"{\"data\":\"QQ=\"}", "data", "expected standard base64 with padding"},
        {"{\"data\":\"-_8=\"}", "data", "expected standard base64 with padding"},
        {"{\"data\":\"QUJD\\n\"}", "data", "expected standard base64 with padding"},
        {"{\"data\":\"QR==\"}", "data", "expected standard base64 with padding"},
        {"{\"data\":5}", "data", "expected a base64 string"},
        /* enums */
        {"{\"kind\":\"unspecified\"}", "kind",
         "unknown value \"unspecified\"; expected one of: department, class_group"},
        {"{\"kind\":\"UNIT_KIND_DEPARTMENT\"}", "kind",
         "unknown value \"UNIT_KIND_DEPARTMENT\"; expected one of: department, class_group"},
        {"{\"kind\":\"Department\"}", "kind",
         "unknown value \"Department\"; expected one of: department, class_group"},
        {"{\"kind\":\"\"}", "kind", "unknown value \"\"; expected one of: department, class_group"},
        {"{\"kind\":1}", "kind", "expected a string, one of: department, class_group"},
        {"{\"kind\":true}", "kind", "expected a string, one of: department, class_group"},
        {"{\"status\":\"ok\"}", "status", "unknown value \"ok\"; expected one of: bad_request, not_found"},
        {"{\"method\":\"http2_method_get\"}", "method",
         "unknown value \"http2_method_get\"; expected one of: get, post"},
        /* messages */
        {"{\"item\":\"x\"}", "item", "expected a JSON object"},
        {"{\"item\":[]}", "item", "expected a JSON object"},
        {"{\"item\":5}", "item", "expected a JSON object"},
        {"{\"item\":{\"name\":1}}", "item.name", "expected a string"},
        {"{\"item\":{\"nick\":\"a\"}}", "item.nick", "unknown field"},
        {"{\"item\":{\"child\":{\"count\":\"3\"}}}", "item.child.count", "expected an integer"},
        /* times */
        {"{\"created_at\":1795856400000}", "created_at", "expected an RFC 3339 time string"},
        {"{\"created_at\":\"yesterday\"}", "created_at", "expected an RFC 3339 time string"},
        {"{\"created_at\":\"2026-02-30T00:00:00Z\"}", "created_at",
         "expected an RFC 3339 time string"},
        {"{\"created_at\":\"2026-11-28T09:00:00\"}", "created_at",
         "expected an RFC 3339 time string"},
        {"{\"created_at\":\"2026-11-28 09:00:00Z\"}", "created_at",
         "expected an RFC 3339 time string"},
        {"{\"created_at\":\"\"}", "created_at", "expected an RFC 3339 time string"},
        {"{\"valid_until\":true}", "valid_until", "expected an RFC 3339 time string"},
        {"{\"seen_at\":{}}", "seen_at", "expected an RFC 3339 time string"},
    };
    REJECT_ALL (&codectest__scalars__descriptor, rows);
}

/*  jansson refuses \u0000 when parsing, but a json_t built in code may
    carry one; a C string would silently cut it. */
static void
test_string_with_nul_rejected (void **state)
{
    (void) state;
    json_t *json = json_object ();
    json_object_set_new (json, "text", json_stringn ("a\0b", 3));
    ProtobufCMessage *msg = NULL;
    assert_int_equal (codec_from_json (&codectest__scalars__descriptor, json, s_arena, &msg,
                                       s_field, sizeof s_field, s_err, sizeof s_err),
                      -1);
    json_decref (json);
    assert_null (msg);
    assert_string_equal (s_field, "text");
    assert_string_equal (s_err, "must not contain NUL characters");
}

/*  Values only a service can produce: beyond JSON's integers, not numbers,
    not UTF-8, not a known enum value, outside RFC 3339's years. */
static void
test_scalars_output_edges (void **state)
{
    (void) state;
    Codectest__Scalars msg = CODECTEST__SCALARS__INIT;
    Codectest__Item item = CODECTEST__ITEM__INIT;
    msg.u64 = UINT64_MAX;
    msg.f64 = (uint64_t) INT64_MAX + 1;
    msg.fl = INFINITY;
    msg.db = NAN;
    msg.text = "a\xff" "b\xe2\x82" "c\xed\xa0\x80";
    msg.kind = 99;
    msg.status = CODECTEST__STATUS__OK;
    msg.created_at = INT64_MAX;
    msg.valid_until = -62167219200001LL;
    msg.seen_at = -62167219200000LL;
    msg.item = &item;
    item.name = NULL;
    s_assert_json (&msg.base,
                   "{\"i32\":0,\"s32\":0,\"sf32\":0,\"u32\":0,\"f32\":0,\"i64\":0,\"s64\":0,"
                   "\"sf64\":0,\"u64\":1.8446744073709552e19,\"f64\":9.2233720368547758e18,"
                   "\"fl\":null,\"db\":null,\"flag\":false,"
                   "\"text\":\"a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd" "c"
                   "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\","
                   "\"data\":\"\",\"kind\":null,\"status\":null,"
                   "\"item\":{\"name\":\"\",\"count\":0,\"child\":null},"
                   "\"created_at\":null,\"valid_until\":null,\"seen_at\":\"0000-01-01T00:00:00Z\","
                   "\"count_at_least\":0,\"method\":null}");
}

static void
test_float_shortest_form (void **state)
{
    (void) state;
    Codectest__Repeated msg = CODECTEST__REPEATED__INIT;
    float fls[] = {0.1f, 1.0f / 3.0f, 16777216.0f, -2.5e-7f};
    msg.n_fls = 4;
    msg.fls = fls;
    json_t *json = codec_to_json (&msg.base);
    assert_non_null (json);
    char *text = json_dumps (json_object_get (json, "fls"), JSON_COMPACT | JSON_REAL_PRECISION (9));
    json_decref (json);
    assert_string_equal (text, "[0.1,0.33333334,16777216.0,-2.5e-7]");
    free (text);
}

/*  --- enums --- */

static void
test_enum_names (void **state)
{
    (void) state;
    const ProtobufCEnumDescriptor *kind = &codectest__unit_kind__descriptor;
    assert_null (codec_enum_name (kind, 0));
    assert_string_equal (codec_enum_name (kind, 1), "department");
    assert_string_equal (codec_enum_name (kind, 2), "class_group");
    assert_null (codec_enum_name (kind, 3));
    assert_null (codec_enum_name (kind, -1));
    assert_ptr_equal (codec_enum_name (kind, 1), codec_enum_name (kind, 1));
    assert_string_equal (codec_enum_name (&codectest__status__descriptor, 1), "bad_request");
    assert_null (codec_enum_name (&codectest__status__descriptor, 0));
    assert_string_equal (codec_enum_name (&codectest__http2_method__descriptor, 1), "get");
    assert_string_equal (codec_enum_name (&codectest__http2_method__descriptor, 2), "post");
    assert_string_equal (codec_enum_name (&codectest__org__plan__descriptor, 2), "school_plus");
    assert_string_equal (codec_enum_name (&bus__role__descriptor, BUS__ROLE__ROLE_ADMIN), "admin");
    assert_string_equal (codec_enum_name (&bus__role__descriptor, BUS__ROLE__ROLE_ADMINISTRATION),
                         "administration");
    assert_null (codec_enum_name (NULL, 1));

    int value = -7;
    assert_int_equal (codec_enum_value (kind, "class_group", &value), 0);
    assert_int_equal (value, 2);
    assert_int_equal (codec_enum_value (&codectest__org__plan__descriptor, "free", &value), 0);
    assert_int_equal (value, 1);
    assert_int_equal (codec_enum_value (&bus__role__descriptor, "parent", &value), 0);
    assert_int_equal (value, BUS__ROLE__ROLE_PARENT);
    value = -7;
    assert_int_equal (codec_enum_value (kind, "unspecified", &value), -1);
    assert_int_equal (codec_enum_value (kind, "UNIT_KIND_DEPARTMENT", &value), -1);
    assert_int_equal (codec_enum_value (kind, "DEPARTMENT", &value), -1);
    assert_int_equal (codec_enum_value (kind, "", &value), -1);
    assert_int_equal (codec_enum_value (kind, NULL, &value), -1);
    assert_int_equal (codec_enum_value (&codectest__status__descriptor, "ok", &value), -1);
    assert_int_equal (codec_enum_value (&bus__role__descriptor, "unspecified", &value), -1);
    assert_int_equal (value, -7);
}

/*  Many threads meeting an enum for the first time build one table. */
static void *
s_enum_reader (void *arg)
{
    const char **seen = arg;
    for (int i = 0; i < 2000; i++) {
        const char *name = codec_enum_name (&bus__status__descriptor, 1 + i % 12);
        if (i % 12 == 9)
            *seen = name;
    }
    return NULL;
}

static void
test_enum_names_threads (void **state)
{
    (void) state;
    enum { THREADS = 8 };
    pthread_t threads[THREADS];
    const char *seen[THREADS] = {NULL};
    for (int i = 0; i < THREADS; i++)
        assert_int_equal (pthread_create (&threads[i], NULL, s_enum_reader, &seen[i]), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join (threads[i], NULL);
    const char *expected = codec_enum_name (&bus__status__descriptor, BUS__STATUS__RATE_LIMITED);
    assert_string_equal (expected, "rate_limited");
    for (int i = 0; i < THREADS; i++)
        assert_ptr_equal (seen[i], expected);
}

/*  --- nested messages, repeated fields --- */

static void
test_nested_round_trip (void **state)
{
    (void) state;
    const char *in
        = "{\"org_id\":\"01JDXQ\",\"admin\":{\"name\":\"Анна\",\"phone\":\"+79991234567\"},"
          "\"plan\":\"school_plus\",\"deputies\":[{\"name\":\"a\",\"phone\":\"\"},"
          "{\"name\":\"b\",\"phone\":\"+7\"}],\"limit\":20,\"statuses\":[\"active\",\"invited\"],"
          "\"kinds\":[\"department\",null],\"years\":[2025,2026],"
          "\"since_at\":\"2026-09-01T00:00:00Z\",\"max_members\":0,\"archived\":true,"
          "\"ratio\":0.75,\"logo\":\"iVBORw0KGgo=\",\"delta\":-5}";
    Codectest__Org *org = (Codectest__Org *) s_round_trip (&codectest__org__descriptor, in, in);
    assert_string_equal (org->admin->phone, "+79991234567");
    assert_int_equal (org->n_deputies, 2);
    assert_string_equal (org->deputies[1]->phone, "+7");
    assert_int_equal (org->plan, CODECTEST__ORG__PLAN__PLAN_SCHOOL_PLUS);
    assert_int_equal (org->n_kinds, 2);
    assert_int_equal (org->kinds[1], 0);
    assert_true (org->since_at == 1788220800000LL);
    assert_int_equal (org->_max_members_case, CODECTEST__ORG___MAX_MEMBERS_MAX_MEMBERS);
    assert_int_equal (org->logo.len, 8);
}

static void
test_nested_rejected (void **state)
{
    (void) state;
    static const rejection_t rows[] = {
        {"{\"admin\":{\"phone\":79991234567}}", "admin.phone", "expected a string"},
        {"{\"admin\":{\"name\":\"a\",\"nickname\":\"b\"}}", "admin.nickname", "unknown field"},
        {"{\"admin\":\"x\"}", "admin", "expected a JSON object"},
        {"{\"plan\":\"free\",\"org\":\"x\"}", "org", "unknown field"},
        {"{\"plan\":\"plan_free\"}", "plan", "unknown value \"plan_free\"; expected one of: free, school_plus"},
        {"{\"deputies\":[{\"name\":\"a\"},{\"name\":\"b\"},{\"name\":7}]}", "deputies[2].name",
         "expected a string"},
        {"{\"deputies\":[{},[]]}", "deputies[1]", "expected a JSON object"},
        {"{\"deputies\":[null]}", "deputies[0]", "expected a JSON object"},
        {"{\"deputies\":[{\"x\":1}]}", "deputies[0].x", "unknown field"},
        {"{\"deputies\":{}}", "deputies", "expected an array"},
        {"{\"statuses\":\"active\"}", "statuses", "expected an array"},
        {"{\"statuses\":[\"a\",null]}", "statuses[1]", "expected a string"},
        {"{\"statuses\":[\"a\",1]}", "statuses[1]", "expected a string"},
        {"{\"kinds\":[\"department\",\"club\"]}", "kinds[1]",
         "unknown value \"club\"; expected one of: department, class_group"},
        {"{\"years\":[2025,\"2026\"]}", "years[1]", "expected an integer"},
        {"{\"years\":[2025,null]}", "years[1]", "expected an integer"},
        {"{\"years\":[2147483648]}", "years[0]", "out of range for int32"},
        {"{\"max_members\":-1}", "max_members", "out of range for uint32"},
        {"{\"max_members\":\"5\"}", "max_members", "expected an integer"},
        {"{\"limit\":2147483648}", "limit", "out of range for int32"},
        {"{\"since_at\":0}", "since_at", "expected an RFC 3339 time string"},
        {"{\"archived\":\"yes\"}", "archived", "expected true or false"},
        {"{\"logo\":\"not base64\"}", "logo", "expected standard base64 with padding"},
    };
    REJECT_ALL (&codectest__org__descriptor, rows);
}

static void
test_repeated_round_trip (void **state)
{
    (void) state;
    s_round_trip (&codectest__repeated__descriptor,
                  "{\"i32s\":[1,-2,2147483647],\"u64s\":[0,9223372036854775807],"
                  "\"dbs\":[1.5,-0.25,3],\"flags\":[true,false],\"texts\":[\"a\",\"\",\"ü\"],"
                  "\"blobs\":[\"\",\"AA==\",\"AAE=\"],\"kinds\":[\"department\",null,\"class_group\"],"
                  "\"items\":[{\"name\":\"a\"},{\"name\":\"b\",\"child\":{\"name\":\"c\",\"count\":2}}],"
                  "\"changed_at\":[\"2026-01-01T00:00:00Z\",null],\"fls\":[0.5,-1],"
                  "\"s32s\":[-1,0,1]}",
                  "{\"i32s\":[1,-2,2147483647],\"u64s\":[0,9223372036854775807],"
                  "\"dbs\":[1.5,-0.25,3.0],\"flags\":[true,false],\"texts\":[\"a\",\"\",\"ü\"],"
                  "\"blobs\":[\"\",\"AA==\",\"AAE=\"],\"kinds\":[\"department\",null,\"class_group\"],"
                  "\"items\":[{\"name\":\"a\",\"count\":0,\"child\":null},{\"name\":\"b\",\"count\":0,"
                  "\"child\":{\"name\":\"c\",\"count\":2,\"child\":null}}],"
                  "\"changed_at\":[\"2026-01-01T00:00:00Z\",null],\"fls\":[0.5,-1.0],"
                  "\"s32s\":[-1,0,1]}");
    const char *empty = "{\"i32s\":[],\"u64s\":[],\"dbs\":[],\"flags\":[],\"texts\":[],\"blobs\":[],"
                        "\"kinds\":[],\"items\":[],\"changed_at\":[],\"fls\":[],\"s32s\":[]}";
    s_round_trip (&codectest__repeated__descriptor, "{}", empty);
    s_round_trip (&codectest__repeated__descriptor,
                  "{\"i32s\":null,\"texts\":null,\"items\":null,\"kinds\":[]}", empty);
}

static void
test_repeated_rejected (void **state)
{
    (void) state;
    static const rejection_t rows[] = {
        {"{\"i32s\":1}", "i32s", "expected an array"},
        {"{\"i32s\":{}}", "i32s", "expected an array"},
        {"{\"i32s\":[1,1.5]}", "i32s[1]", "expected an integer"},
        {"{\"u64s\":[1,-1]}", "u64s[1]", "out of range for uint64"},
        {"{\"dbs\":[1,\"2\"]}", "dbs[1]", "expected a number"},
        {"{\"dbs\":[null]}", "dbs[0]", "expected a number"},
        {"{\"flags\":[true,0]}", "flags[1]", "expected true or false"},
        {"{\"flags\":[null]}", "flags[0]", "expected true or false"},
        {"{\"texts\":[[\"a\"]]}", "texts[0]", "expected a string"},
        {"{\"blobs\":[\"AA==\",\"A\"]}", "blobs[1]", "expected standard base64 with padding"},
        {"{\"blobs\":[null]}", "blobs[0]", "expected a base64 string"},
        {"{\"kinds\":[1]}", "kinds[0]", "expected a string, one of: department, class_group"},
        {"{\"items\":[{},{\"child\":{\"name\":false}}]}", "items[1].child.name",
         "expected a string"},
        {"{\"changed_at\":[\"2026-01-01T00:00:00Z\",5]}", "changed_at[1]",
         "expected an RFC 3339 time string"},
        {"{\"fls\":[1e39]}", "fls[0]", "out of range for float"},
        {"{\"s32s\":[-2147483649]}", "s32s[0]", "out of range for sint32"},
    };
    REJECT_ALL (&codectest__repeated__descriptor, rows);
}

/*  Builds {"<field>":[v, v, ...]} with `count` elements. */
static char *
s_long_array (const char *field, const char *element, size_t count)
{
    size_t size = strlen (field) + count * (strlen (element) + 1) + 16;
    char *text = malloc (size);
    assert_non_null (text);
    size_t used = (size_t) snprintf (text, size, "{\"%s\":[", field);
    for (size_t i = 0; i < count; i++)
        used += (size_t) snprintf (text + used, size - used, "%s%s", i ? "," : "", element);
    snprintf (text + used, size - used, "]}");
    return text;
}

static void
test_repeated_limit (void **state)
{
    (void) state;
    char *text = s_long_array ("i32s", "7", CODEC_MAX_ITEMS);
    Codectest__Repeated *msg = (Codectest__Repeated *) s_decode (&codectest__repeated__descriptor,
                                                                 text);
    free (text);
    assert_non_null (msg);
    assert_int_equal (msg->n_i32s, CODEC_MAX_ITEMS);
    assert_int_equal (msg->i32s[CODEC_MAX_ITEMS - 1], 7);

    text = s_long_array ("items", "{}", CODEC_MAX_ITEMS + 1);
    assert_null (s_decode (&codectest__repeated__descriptor, text));
    free (text);
    assert_string_equal (s_field, "items");
    assert_string_equal (s_err, "too many elements (at most 1000)");
}

/*  Item nested in Item, `levels` messages in all: {"child":{"child":{}}}. */
static char *
s_nested_items (int levels)
{
    char *text = malloc ((size_t) levels * 12 + 1);
    assert_non_null (text);
    char *p = text;
    for (int i = 1; i < levels; i++)
        p += sprintf (p, "{\"child\":");
    p += sprintf (p, "{}");
    for (int i = 1; i < levels; i++)
        *p++ = '}';
    *p = 0;
    return text;
}

static void
test_depth_limit (void **state)
{
    (void) state;
    char *text = s_nested_items (CODEC_MAX_DEPTH);
    ProtobufCMessage *msg = s_decode (&codectest__item__descriptor, text);
    free (text);
    assert_non_null (msg);
    json_t *json = codec_to_json (msg);
    assert_non_null (json);
    json_decref (json);

    text = s_nested_items (CODEC_MAX_DEPTH + 1);
    assert_null (s_decode (&codectest__item__descriptor, text));
    free (text);
    char path[200] = "";
    for (int i = 0; i < CODEC_MAX_DEPTH; i++)
        strcat (path, i ? ".child" : "child");
    assert_string_equal (s_field, path);
    assert_string_equal (s_err, "nested too deeply (at most 16 levels)");

    /*  A service could build it: the encoder refuses rather than recursing
        without bound. */
    Codectest__Item *deep = (Codectest__Item *) msg;
    Codectest__Item *leaf = deep;
    while (leaf->child)
        leaf = leaf->child;
    leaf->child = arena_msg (s_arena, &codectest__item__descriptor);
    assert_null (codec_to_json (&deep->base));
}

/*  --- presence: single-member oneofs and proto2-style optional --- */

static void
test_optional_absent_and_present (void **state)
{
    (void) state;
    const char *absent = "{\"i32\":null,\"text\":null,\"flag\":null,\"kind\":null,"
                         "\"expires_at\":null,\"db\":null,\"item\":null,\"u64\":null,"
                         "\"plain_item\":null}";
    Codectest__Optionals *msg = (Codectest__Optionals *) s_round_trip (
        &codectest__optionals__descriptor, "{}", absent);
    assert_int_equal (msg->_i32_case, 0);
    msg = (Codectest__Optionals *) s_round_trip (&codectest__optionals__descriptor, absent, absent);
    assert_int_equal (msg->_text_case, 0);

    /*  Present with the zero value: still emitted, and survives the wire. */
    msg = (Codectest__Optionals *) s_round_trip (
        &codectest__optionals__descriptor,
        "{\"i32\":0,\"text\":\"\",\"flag\":false,\"kind\":\"department\","
        "\"expires_at\":\"1970-01-01T00:00:00Z\",\"db\":0,\"item\":{},\"u64\":0,\"plain_item\":{}}",
        "{\"i32\":0,\"text\":\"\",\"flag\":false,\"kind\":\"department\","
        "\"expires_at\":\"1970-01-01T00:00:00Z\",\"db\":0.0,"
        "\"item\":{\"name\":\"\",\"count\":0,\"child\":null},\"u64\":0,"
        "\"plain_item\":{\"name\":\"\",\"count\":0,\"child\":null}}");
    assert_int_equal (msg->_i32_case, CODECTEST__OPTIONALS___I32_I32);
    assert_int_equal (msg->_expires_at_case, CODECTEST__OPTIONALS___EXPIRES_AT_EXPIRES_AT);
    assert_true (msg->expires_at == 0);

    s_round_trip (&codectest__optionals__descriptor,
                  "{\"i32\":-4,\"text\":\"t\",\"expires_at\":\"2026-11-28T09:00:00Z\",\"u64\":5}",
                  "{\"i32\":-4,\"text\":\"t\",\"flag\":null,\"kind\":null,"
                  "\"expires_at\":\"2026-11-28T09:00:00Z\",\"db\":null,\"item\":null,\"u64\":5,"
                  "\"plain_item\":null}");
}

static void
test_optional_rejected (void **state)
{
    (void) state;
    static const rejection_t rows[] = {
        {"{\"i32\":\"0\"}", "i32", "expected an integer"},
        {"{\"text\":0}", "text", "expected a string"},
        {"{\"flag\":0}", "flag", "expected true or false"},
        {"{\"kind\":\"unspecified\"}", "kind",
         "unknown value \"unspecified\"; expected one of: department, class_group"},
        {"{\"expires_at\":0}", "expires_at", "expected an RFC 3339 time string"},
        {"{\"item\":{\"count\":1.25}}", "item.count", "expected an integer"},
        {"{\"u64\":-5}", "u64", "out of range for uint64"},
        {"{\"_i32\":1}", "_i32", "unknown field"},
    };
    REJECT_ALL (&codectest__optionals__descriptor, rows);
}

/*  A proto2-style message, written by hand as protoc-c would generate it:
    LABEL_OPTIONAL with has_ members for scalars and bytes, NULL for an
    absent string or message. protoc-c generates these for proto2 files (and
    would for proto3 `optional` once it supports it). */
typedef struct {
    ProtobufCMessage base;
    protobuf_c_boolean has_count;
    int32_t count;
    char *note;
    protobuf_c_boolean has_data;
    ProtobufCBinaryData data;
    protobuf_c_boolean has_kind;
    Codectest__UnitKind kind;
    protobuf_c_boolean has_starts_at;
    int64_t starts_at;
    Codectest__Item *item;
} legacy_t;

static const ProtobufCFieldDescriptor s_legacy_fields[] = {
    {"count", 1, PROTOBUF_C_LABEL_OPTIONAL, PROTOBUF_C_TYPE_INT32, offsetof (legacy_t, has_count),
     offsetof (legacy_t, count), NULL, NULL, 0, 0, NULL, NULL},
    {"note", 2, PROTOBUF_C_LABEL_OPTIONAL, PROTOBUF_C_TYPE_STRING, 0, offsetof (legacy_t, note),
     NULL, NULL, 0, 0, NULL, NULL},
    {"data", 3, PROTOBUF_C_LABEL_OPTIONAL, PROTOBUF_C_TYPE_BYTES, offsetof (legacy_t, has_data),
     offsetof (legacy_t, data), NULL, NULL, 0, 0, NULL, NULL},
    {"kind", 4, PROTOBUF_C_LABEL_OPTIONAL, PROTOBUF_C_TYPE_ENUM, offsetof (legacy_t, has_kind),
     offsetof (legacy_t, kind), &codectest__unit_kind__descriptor, NULL, 0, 0, NULL, NULL},
    {"starts_at", 5, PROTOBUF_C_LABEL_OPTIONAL, PROTOBUF_C_TYPE_INT64,
     offsetof (legacy_t, has_starts_at), offsetof (legacy_t, starts_at), NULL, NULL, 0, 0, NULL,
     NULL},
    {"item", 6, PROTOBUF_C_LABEL_OPTIONAL, PROTOBUF_C_TYPE_MESSAGE, 0, offsetof (legacy_t, item),
     &codectest__item__descriptor, NULL, 0, 0, NULL, NULL},
};
static const unsigned s_legacy_by_name[] = {0, 2, 5, 3, 1, 4};
static const ProtobufCIntRange s_legacy_ranges[] = {{1, 0}, {0, 6}};
static void s_legacy_init (ProtobufCMessage *message);
static const ProtobufCMessageDescriptor s_legacy_descriptor = {
    PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
    "codectest.Legacy",
    "Legacy",
    "Legacy",
    "codectest",
    sizeof (legacy_t),
    6,
    s_legacy_fields,
    s_legacy_by_name,
    1,
    s_legacy_ranges,
    s_legacy_init,
    NULL,
    NULL,
    NULL};

static void
s_legacy_init (ProtobufCMessage *message)
{
    legacy_t init = {PROTOBUF_C_MESSAGE_INIT (&s_legacy_descriptor)};
    *(legacy_t *) message = init;
}

static void
test_optional_proto2_style (void **state)
{
    (void) state;
    const char *absent = "{\"count\":null,\"note\":null,\"data\":null,\"kind\":null,"
                         "\"starts_at\":null,\"item\":null}";
    s_round_trip (&s_legacy_descriptor, "{}", absent);
    legacy_t *msg = (legacy_t *) s_round_trip (
        &s_legacy_descriptor,
        "{\"count\":0,\"note\":\"\",\"data\":\"\",\"kind\":\"department\","
        "\"starts_at\":\"1970-01-01T00:00:00Z\",\"item\":{}}",
        "{\"count\":0,\"note\":\"\",\"data\":\"\",\"kind\":\"department\","
        "\"starts_at\":\"1970-01-01T00:00:00Z\","
        "\"item\":{\"name\":\"\",\"count\":0,\"child\":null}}");
    assert_true (msg->has_count);
    assert_true (msg->has_data);
    assert_true (msg->has_starts_at);
    assert_non_null (msg->note);

    static const rejection_t rows[] = {
        {"{\"count\":\"x\"}", "count", "expected an integer"},
        {"{\"starts_at\":12}", "starts_at", "expected an RFC 3339 time string"},
        {"{\"item\":{\"name\":[]}}", "item.name", "expected a string"},
    };
    REJECT_ALL (&s_legacy_descriptor, rows);

    legacy_t *blank = arena_msg (s_arena, &s_legacy_descriptor);
    assert_int_equal (codec_set_text (&blank->base, "count", "3", s_arena, s_err, sizeof s_err), 0);
    assert_int_equal (codec_set_text (&blank->base, "starts_at", "2026-11-28T09:00:00Z", s_arena,
                                      s_err, sizeof s_err),
                      0);
    s_assert_json (&blank->base, "{\"count\":3,\"note\":null,\"data\":null,\"kind\":null,"
                                 "\"starts_at\":\"2026-11-28T09:00:00Z\",\"item\":null}");
}

/*  --- oneof --- */

static void
test_oneof_round_trip (void **state)
{
    (void) state;
    const ProtobufCMessageDescriptor *desc = &codectest__choice__descriptor;
    s_round_trip (desc, "{}", "{\"id\":\"\"}");
    s_round_trip (desc, "{\"id\":\"c1\",\"user_id\":\"u1\"}", "{\"id\":\"c1\",\"user_id\":\"u1\"}");
    s_round_trip (desc, "{\"number\":0,\"yes\":false}", "{\"id\":\"\",\"number\":0,\"yes\":false}");
    s_round_trip (desc, "{\"user_id\":\"\"}", "{\"id\":\"\",\"user_id\":\"\"}");
    s_round_trip (desc, "{\"item\":{\"name\":\"i\"},\"label\":\"l\"}",
                  "{\"id\":\"\",\"item\":{\"name\":\"i\",\"count\":0,\"child\":null},\"label\":\"l\"}");
    s_round_trip (desc, "{\"kind\":\"class_group\"}", "{\"id\":\"\",\"kind\":\"class_group\"}");
    s_round_trip (desc, "{\"due_at\":\"1970-01-01T00:00:00Z\"}",
                  "{\"id\":\"\",\"due_at\":\"1970-01-01T00:00:00Z\"}");
    s_round_trip (desc, "{\"blob\":\"\"}", "{\"id\":\"\",\"blob\":\"\"}");
    Codectest__Choice *msg = (Codectest__Choice *) s_round_trip (
        desc, "{\"user_id\":null,\"number\":5,\"label\":null}", "{\"id\":\"\",\"number\":5}");
    assert_int_equal (msg->target_case, CODECTEST__CHOICE__TARGET_NUMBER);
    assert_int_equal (msg->other_case, CODECTEST__CHOICE__OTHER__NOT_SET);
}

static void
test_oneof_rejected (void **state)
{
    (void) state;
    static const rejection_t rows[] = {
        {"{\"user_id\":\"u\",\"number\":5}", "number",
         "conflicts with \"user_id\": only one of them may be set"},
        {"{\"item\":{},\"kind\":\"department\"}", "kind",
         "conflicts with \"item\": only one of them may be set"},
        {"{\"yes\":true,\"id\":\"x\",\"label\":\"x\"}", "label",
         "conflicts with \"yes\": only one of them may be set"},
        {"{\"user_id\":5}", "user_id", "expected a string"},
        {"{\"due_at\":1}", "due_at", "expected an RFC 3339 time string"},
        {"{\"target\":{}}", "target", "unknown field"},
    };
    REJECT_ALL (&codectest__choice__descriptor, rows);
}

/*  --- maps --- */

static void
test_map_round_trip (void **state)
{
    (void) state;
    const char *in
        = "{\"labels\":{\"b\":\"2\",\"a\":\"1\",\"\":\"empty\"},"
          "\"items\":{\"7\":{\"name\":\"x\",\"count\":0,\"child\":null},\"-3\":{},\"1\":null},"
          "\"counts\":{\"18446744073709551615\":-1,\"0\":5},"
          "\"kinds\":{\"x\":\"department\",\"y\":null},"
          "\"names\":{\"-9223372036854775808\":\"min\"},"
          "\"switches\":{\"true\":1,\"false\":0},\"blobs\":{\"4294967295\":\"AAE=\"}}";
    const char *out
        = "{\"labels\":{\"b\":\"2\",\"a\":\"1\",\"\":\"empty\"},"
          "\"items\":{\"7\":{\"name\":\"x\",\"count\":0,\"child\":null},"
          "\"-3\":{\"name\":\"\",\"count\":0,\"child\":null},\"1\":null},"
          "\"counts\":{\"18446744073709551615\":-1,\"0\":5},"
          "\"kinds\":{\"x\":\"department\",\"y\":null},"
          "\"names\":{\"-9223372036854775808\":\"min\"},"
          "\"switches\":{\"true\":1,\"false\":0},\"blobs\":{\"4294967295\":\"AAE=\"}}";
    Codectest__Maps *msg = (Codectest__Maps *) s_round_trip (&codectest__maps__descriptor, in, out);
    assert_int_equal (msg->n_counts, 2);
    assert_true (msg->counts[0]->key == UINT64_MAX);
    assert_true (msg->counts[0]->value == -1);
    assert_int_equal (msg->items[1]->key, -3);
    assert_true (msg->switches[0]->key);

    s_round_trip (&codectest__maps__descriptor, "{\"labels\":null,\"items\":{}}",
                  "{\"labels\":{},\"items\":{},\"counts\":{},\"kinds\":{},\"names\":{},"
                  "\"switches\":{},\"blobs\":{}}");
}

static void
test_map_rejected (void **state)
{
    (void) state;
    static const rejection_t rows[] = {
        {"{\"labels\":[]}", "labels", "expected a JSON object"},
        {"{\"labels\":\"a=b\"}", "labels", "expected a JSON object"},
        {"{\"labels\":{\"a\":1}}", "labels.a", "expected a string"},
        {"{\"labels\":{\"a\":\"x\",\"b\":null,\"c\":[]}}", "labels.c", "expected a string"},
        {"{\"items\":{\"x\":{}}}", "items.x", "invalid key: expected an integer"},
        {"{\"items\":{\"\":{}}}", "items.", "invalid key: expected an integer"},
        {"{\"items\":{\" 1\":{}}}", "items. 1", "invalid key: expected an integer"},
        {"{\"items\":{\"1.0\":{}}}", "items.1.0", "invalid key: expected an integer"},
        {"{\"items\":{\"2147483648\":{}}}", "items.2147483648", "invalid key: out of range for int32"},
        {"{\"items\":{\"1\":{\"name\":5}}}", "items.1.name", "expected a string"},
        {"{\"items\":{\"1\":[]}}", "items.1", "expected a JSON object"},
        {"{\"counts\":{\"-1\":1}}", "counts.-1", "invalid key: out of range for uint64"},
        {"{\"counts\":{\"18446744073709551616\":1}}", "counts.18446744073709551616",
         "invalid key: out of range for uint64"},
        {"{\"counts\":{\"1\":\"1\"}}", "counts.1", "expected an integer"},
        {"{\"switches\":{\"yes\":1}}", "switches.yes", "invalid key: expected true or false"},
        {"{\"kinds\":{\"x\":\"club\"}}", "kinds.x",
         "unknown value \"club\"; expected one of: department, class_group"},
        {"{\"blobs\":{\"1\":\"???\"}}", "blobs.1", "expected standard base64 with padding"},
        {"{\"blobs\":{\"-1\":\"\"}}", "blobs.-1", "invalid key: out of range for uint32"},
        {"{\"names\":{\"9223372036854775808\":\"\"}}", "names.9223372036854775808",
         "invalid key: out of range for int64"},
    };
    REJECT_ALL (&codectest__maps__descriptor, rows);

    /*  Too many entries. */
    json_t *json = json_object ();
    json_t *labels = json_object ();
    for (int i = 0; i <= CODEC_MAX_ITEMS; i++) {
        char key[16];
        snprintf (key, sizeof key, "k%d", i);
        json_object_set_new (labels, key, json_string ("v"));
    }
    json_object_set_new (json, "labels", labels);
    ProtobufCMessage *msg = NULL;
    assert_int_equal (codec_from_json (&codectest__maps__descriptor, json, s_arena, &msg, s_field,
                                       sizeof s_field, s_err, sizeof s_err),
                      -1);
    json_decref (json);
    assert_string_equal (s_field, "labels");
    assert_string_equal (s_err, "too many entries (at most 1000)");
}

/*  --- error reporting --- */

static void
test_error_buffers (void **state)
{
    (void) state;
    json_t *json = json_loads ("{\"deputies\":[{},{},{\"phone\":1}]}", 0, NULL);
    assert_non_null (json);
    ProtobufCMessage *msg = NULL;
    /*  No buffers at all. */
    assert_int_equal (codec_from_json (&codectest__org__descriptor, json, s_arena, &msg, NULL, 0,
                                       NULL, 0),
                      -1);
    /*  Small buffers: truncated, terminated, nothing written past them. */
    char field[8];
    char err[10];
    memset (field, 'x', sizeof field);
    memset (err, 'x', sizeof err);
    assert_int_equal (codec_from_json (&codectest__org__descriptor, json, s_arena, &msg, field,
                                       sizeof field - 2, err, sizeof err - 2),
                      -1);
    json_decref (json);
    assert_string_equal (field, "deput");
    assert_int_equal (field[6], 'x');
    assert_string_equal (err, "expecte");
    assert_int_equal (err[8], 'x');
}

/*  --- codec_set_text --- */

static void
s_set_ok (ProtobufCMessage *msg, const char *name, const char *text)
{
    strcpy (s_err, "<unset>");
    if (codec_set_text (msg, name, text, s_arena, s_err, sizeof s_err) != 0)
        fail_msg ("%s=%s rejected: %s", name, text, s_err);
}

static void
s_set_bad (ProtobufCMessage *msg, const char *name, const char *text, const char *err)
{
    strcpy (s_err, "<unset>");
    if (codec_set_text (msg, name, text, s_arena, s_err, sizeof s_err) != -1)
        fail_msg ("%s=%s accepted", name, text);
    if (strcmp (s_err, err) != 0)
        fail_msg ("%s=%s\n got: %s\nwant: %s", name, text, s_err, err);
}

static void
test_set_text (void **state)
{
    (void) state;
    Codectest__Org *org = arena_msg (s_arena, &codectest__org__descriptor);
    ProtobufCMessage *msg = &org->base;
    s_set_ok (msg, "org_id", "01JDXQ");
    s_set_ok (msg, "limit", "20");
    s_set_ok (msg, "limit", "-5");
    s_set_ok (msg, "plan", "school_plus");
    s_set_ok (msg, "statuses", "x");
    s_set_ok (msg, "statuses", "active,invited");       /* replaces */
    s_set_ok (msg, "kinds", "department,class_group");
    s_set_ok (msg, "years", "");
    s_set_ok (msg, "since_at", "2026-11-28T12:00:00+03:00");
    s_set_ok (msg, "max_members", "0");
    s_set_ok (msg, "archived", "true");
    s_set_ok (msg, "ratio", "0.75");
    s_set_ok (msg, "logo", "AAE=");
    s_set_ok (msg, "delta", "-9223372036854775808");
    assert_int_equal (org->limit, -5);
    assert_true (org->since_at == 1795856400000LL);
    assert_int_equal (org->n_statuses, 2);
    assert_int_equal (org->n_years, 0);
    assert_int_equal (org->_max_members_case, CODECTEST__ORG___MAX_MEMBERS_MAX_MEMBERS);
    s_assert_json (msg, "{\"org_id\":\"01JDXQ\",\"admin\":null,\"plan\":\"school_plus\","
                        "\"deputies\":[],\"limit\":-5,\"statuses\":[\"active\",\"invited\"],"
                        "\"kinds\":[\"department\",\"class_group\"],\"years\":[],"
                        "\"since_at\":\"2026-11-28T09:00:00Z\",\"max_members\":0,"
                        "\"archived\":true,\"ratio\":0.75,\"logo\":\"AAE=\","
                        "\"delta\":-9223372036854775808}");
    s_assert_json (s_wire (msg), "{\"org_id\":\"01JDXQ\",\"admin\":null,\"plan\":\"school_plus\","
                                 "\"deputies\":[],\"limit\":-5,\"statuses\":[\"active\",\"invited\"],"
                                 "\"kinds\":[\"department\",\"class_group\"],\"years\":[],"
                                 "\"since_at\":\"2026-11-28T09:00:00Z\",\"max_members\":0,"
                                 "\"archived\":true,\"ratio\":0.75,\"logo\":\"AAE=\","
                                 "\"delta\":-9223372036854775808}");
}

static void
test_set_text_rejected (void **state)
{
    (void) state;
    Codectest__Org *org = arena_msg (s_arena, &codectest__org__descriptor);
    ProtobufCMessage *msg = &org->base;
    s_set_bad (msg, "bogus", "1", "unknown field \"bogus\"");
    s_set_bad (msg, "Limit", "1", "unknown field \"Limit\"");
    s_set_bad (msg, "admin", "x", "cannot be set from text");
    s_set_bad (msg, "deputies", "x", "cannot be set from text");
    s_set_bad (msg, "org_id", "a\xff", "expected UTF-8 text");
    s_set_bad (msg, "org_id", "\xc0\xaf", "expected UTF-8 text");
    s_set_bad (msg, "limit", "abc", "expected an integer");
    s_set_bad (msg, "limit", "", "expected an integer");
    s_set_bad (msg, "limit", "-", "expected an integer");
    s_set_bad (msg, "limit", " 5", "expected an integer");
    s_set_bad (msg, "limit", "5 ", "expected an integer");
    s_set_bad (msg, "limit", "+5", "expected an integer");
    s_set_bad (msg, "limit", "0x10", "expected an integer");
    s_set_bad (msg, "limit", "1.0", "expected an integer");
    s_set_bad (msg, "limit", "2147483648", "out of range for int32");
    s_set_bad (msg, "limit", "99999999999999999999", "out of range for int32");
    s_set_bad (msg, "max_members", "-1", "out of range for uint32");
    s_set_bad (msg, "max_members", "4294967296", "out of range for uint32");
    s_set_bad (msg, "delta", "9223372036854775808", "out of range for sint64");
    s_set_bad (msg, "delta", "-9223372036854775809", "out of range for sint64");
    s_set_bad (msg, "archived", "1", "expected true or false");
    s_set_bad (msg, "archived", "TRUE", "expected true or false");
    s_set_bad (msg, "plan", "unspecified",
               "unknown value \"unspecified\"; expected one of: free, school_plus");
    s_set_bad (msg, "plan", "PLAN_FREE", "unknown value \"PLAN_FREE\"; expected one of: free, school_plus");
    s_set_bad (msg, "since_at", "tomorrow", "expected an RFC 3339 time");
    s_set_bad (msg, "since_at", "1795856400000", "expected an RFC 3339 time");
    s_set_bad (msg, "ratio", "abc", "expected a number");
    s_set_bad (msg, "ratio", "", "expected a number");
    s_set_bad (msg, "ratio", " 1", "expected a number");
    s_set_bad (msg, "ratio", "1x", "expected a number");
    s_set_bad (msg, "ratio", "nan", "expected a number");
    s_set_bad (msg, "ratio", "1e400", "expected a number");
    s_set_bad (msg, "logo", "AAE", "expected standard base64 with padding");
    s_set_bad (msg, "statuses", "a,,b", "element 1: empty");
    s_set_bad (msg, "statuses", ",", "element 0: empty");
    s_set_bad (msg, "kinds", "department,club",
               "element 1: unknown value \"club\"; expected one of: department, class_group");
    s_set_bad (msg, "years", "2025,x", "element 1: expected an integer");
    /*  Nothing above changed the message. */
    s_assert_json (msg, "{\"org_id\":\"\",\"admin\":null,\"plan\":null,\"deputies\":[],"
                        "\"limit\":0,\"statuses\":[],\"kinds\":[],\"years\":[],\"since_at\":null,"
                        "\"max_members\":null,\"archived\":false,\"ratio\":0.0,\"logo\":\"\","
                        "\"delta\":0}");

    /*  More elements than a JSON array may have. */
    char *many = malloc (2 * (CODEC_MAX_ITEMS + 1));
    assert_non_null (many);
    for (int i = 0; i <= CODEC_MAX_ITEMS; i++)
        memcpy (many + 2 * i, "1,", 2);
    many[2 * CODEC_MAX_ITEMS + 1] = 0;
    s_set_bad (msg, "years", many, "too many elements (at most 1000)");
    many[2 * CODEC_MAX_ITEMS - 1] = 0;
    s_set_ok (msg, "years", many);
    free (many);
    assert_int_equal (org->n_years, CODEC_MAX_ITEMS);

    /*  No error buffer. */
    assert_int_equal (codec_set_text (msg, "bogus", "1", s_arena, NULL, 0), -1);
}

static void
test_set_text_other_kinds (void **state)
{
    (void) state;
    Codectest__Choice *choice = arena_msg (s_arena, &codectest__choice__descriptor);
    s_set_ok (&choice->base, "user_id", "u1");
    s_set_ok (&choice->base, "user_id", "u2");
    s_set_bad (&choice->base, "number", "5", "conflicts with \"user_id\": only one of them may be set");
    s_set_bad (&choice->base, "item", "x", "cannot be set from text");
    s_set_ok (&choice->base, "yes", "false");
    s_assert_json (&choice->base, "{\"id\":\"\",\"user_id\":\"u2\",\"yes\":false}");

    Codectest__Maps *maps = arena_msg (s_arena, &codectest__maps__descriptor);
    s_set_bad (&maps->base, "labels", "a", "cannot be set from text");

    Codectest__Scalars *scalars = arena_msg (s_arena, &codectest__scalars__descriptor);
    s_set_ok (&scalars->base, "u64", "18446744073709551615");
    s_set_ok (&scalars->base, "fl", "0.5");
    s_set_ok (&scalars->base, "text", "");
    s_set_ok (&scalars->base, "status", "not_found");
    s_set_ok (&scalars->base, "count_at_least", "-3");
    s_set_bad (&scalars->base, "fl", "1e39", "out of range for float");
    s_set_bad (&scalars->base, "u64", "18446744073709551616", "out of range for uint64");
    s_set_bad (&scalars->base, "status", "ok", "unknown value \"ok\"; expected one of: bad_request, not_found");
    assert_true (scalars->u64 == UINT64_MAX);
    assert_true (scalars->fl == 0.5f);
    assert_int_equal (scalars->status, CODECTEST__STATUS__NOT_FOUND);

    Codectest__Repeated *rep = arena_msg (s_arena, &codectest__repeated__descriptor);
    s_set_ok (&rep->base, "changed_at", "2026-01-01T00:00:00Z,2026-01-02T00:00:00+00:00");
    s_set_ok (&rep->base, "flags", "true,false,true");
    s_set_bad (&rep->base, "blobs", "AA==,", "element 1: empty");
    s_set_bad (&rep->base, "items", "a", "cannot be set from text");
    s_set_ok (&rep->base, "blobs", "AA==,AAE=");
    assert_int_equal (rep->n_changed_at, 2);
    assert_true (rep->changed_at[1] == rep->changed_at[0] + 86400000);
    assert_int_equal (rep->n_flags, 3);
    assert_int_equal (rep->blobs[1].len, 2);
}

#define T(f) cmocka_unit_test_setup_teardown (f, s_setup, s_teardown)

int
main (void)
{
    const struct CMUnitTest tests[] = {
        T (test_scalars_round_trip),
        T (test_scalars_defaults),
        T (test_scalars_lenient_input),
        T (test_scalars_rejected),
        T (test_string_with_nul_rejected),
        T (test_scalars_output_edges),
        T (test_float_shortest_form),
        T (test_enum_names),
        T (test_enum_names_threads),
        T (test_nested_round_trip),
        T (test_nested_rejected),
        T (test_repeated_round_trip),
        T (test_repeated_rejected),
        T (test_repeated_limit),
        T (test_depth_limit),
        T (test_optional_absent_and_present),
        T (test_optional_rejected),
        T (test_optional_proto2_style),
        T (test_oneof_round_trip),
        T (test_oneof_rejected),
        T (test_map_round_trip),
        T (test_map_rejected),
        T (test_error_buffers),
        T (test_set_text),
        T (test_set_text_rejected),
        T (test_set_text_other_kinds),
    };
    return cmocka_run_group_tests_name ("codec", tests, NULL, NULL);
}
