/*  codec: JSON <-> protobuf by walking protobuf-c descriptors (the rules are
    in codec.h). Decoding allocates only from the caller's arena, so a failed
    decode leaves nothing to free; encoding builds jansson values; enum JSON
    names live in a process-wide table built on first use. */
#include "codec.h"
#include "clock.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*  Times outside years 0000..9999 have no 4-digit RFC 3339 form. */
#define TIME_MIN_MS (-62167219200000LL)     /* 0000-01-01T00:00:00Z */
#define TIME_MAX_MS 253402300799999LL       /* 9999-12-31T23:59:59.999Z */

/*  --- enum JSON names ---

    Each enum descriptor gets one malloc'ed table of JSON names, parallel to
    desc->values, built the first time the enum is used and never freed.
    Readers walk a bucket's list without a lock: an entry is complete before
    the release store that publishes it, and published entries never change.
    Only building takes the mutex, so two threads never build the same
    table twice. */

typedef struct enum_names_t {
    const ProtobufCEnumDescriptor *desc;
    struct enum_names_t *next;
    const char **names;             /* NULL for value 0: it has no JSON name */
} enum_names_t;

#define ENUM_BUCKETS 64
static _Atomic (enum_names_t *) s_enum_buckets[ENUM_BUCKETS];
static pthread_mutex_t s_enum_lock = PTHREAD_MUTEX_INITIALIZER;

static enum_names_t *
s_enum_find (const ProtobufCEnumDescriptor *desc, size_t bucket)
{
    enum_names_t *entry = atomic_load_explicit (&s_enum_buckets[bucket], memory_order_acquire);
    while (entry && entry->desc != desc)
        entry = entry->next;
    return entry;
}

/*  "UnitKind" -> "UNIT_KIND", "HTTP2Method" -> "HTTP2_METHOD": a word starts
    at an upper-case letter after a lower-case letter or digit, or at the
    last capital of an acronym followed by a lower-case letter. `out` holds
    2 * strlen (name) + 1 bytes. */
static void
s_upper_snake (const char *name, char *out)
{
    for (size_t i = 0; name[i]; i++) {
        unsigned char c = (unsigned char) name[i];
        if (i > 0 && isupper (c)) {
            unsigned char prev = (unsigned char) name[i - 1];
            unsigned char next = (unsigned char) name[i + 1];
            if (islower (prev) || isdigit (prev) || (isupper (prev) && islower (next)))
                *out++ = '_';
        }
        *out++ = (char) toupper (c);
    }
    *out = 0;
}

static enum_names_t *
s_enum_build (const ProtobufCEnumDescriptor *desc)
{
    size_t short_len = strlen (desc->short_name);
    size_t size = sizeof (enum_names_t) + desc->n_values * sizeof (char *) + 2 * short_len + 1;
    for (unsigned i = 0; i < desc->n_values; i++)
        size += strlen (desc->values[i].name) + 1;
    enum_names_t *entry = malloc (size);
    if (!entry)
        return NULL;
    entry->desc = desc;
    entry->next = NULL;
    entry->names = (const char **) (entry + 1);
    char *prefix = (char *) (entry->names + desc->n_values);
    s_upper_snake (desc->short_name, prefix);
    size_t prefix_len = strlen (prefix);
    char *text = prefix + prefix_len + 1;
    for (unsigned i = 0; i < desc->n_values; i++) {
        const char *name = desc->values[i].name;
        if (strncmp (name, prefix, prefix_len) == 0 && name[prefix_len] == '_'
            && name[prefix_len + 1])
            name += prefix_len + 1;
        entry->names[i] = desc->values[i].value == 0 ? NULL : text;
        while (*name)
            *text++ = (char) tolower ((unsigned char) *name++);
        *text++ = 0;
    }
    return entry;
}

static const enum_names_t *
s_enum_names (const ProtobufCEnumDescriptor *desc)
{
    size_t bucket = ((uintptr_t) desc >> 4) % ENUM_BUCKETS;
    enum_names_t *entry = s_enum_find (desc, bucket);
    if (entry)
        return entry;
    pthread_mutex_lock (&s_enum_lock);
    entry = s_enum_find (desc, bucket);
    if (!entry) {
        entry = s_enum_build (desc);
        if (entry) {
            entry->next = atomic_load_explicit (&s_enum_buckets[bucket], memory_order_relaxed);
            atomic_store_explicit (&s_enum_buckets[bucket], entry, memory_order_release);
        }
    }
    pthread_mutex_unlock (&s_enum_lock);
    return entry;
}

const char *
codec_enum_name (const ProtobufCEnumDescriptor *desc, int value)
{
    if (!desc || value == 0)
        return NULL;
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value (desc, value);
    const enum_names_t *names = ev ? s_enum_names (desc) : NULL;
    return names ? names->names[ev - desc->values] : NULL;
}

int
codec_enum_value (const ProtobufCEnumDescriptor *desc, const char *name, int *value)
{
    const enum_names_t *names = desc && name ? s_enum_names (desc) : NULL;
    if (!names)
        return -1;
    for (unsigned i = 0; i < desc->n_values; i++)
        if (names->names[i] && strcmp (names->names[i], name) == 0) {
            *value = desc->values[i].value;
            return 0;
        }
    return -1;
}

/*  "department, class_group", for error messages. */
static void
s_enum_choices (const ProtobufCEnumDescriptor *desc, char *out, size_t len)
{
    const enum_names_t *names = s_enum_names (desc);
    size_t used = 0;
    out[0] = 0;
    for (unsigned i = 0; names && i < desc->n_values && used < len; i++) {
        if (!names->names[i])
            continue;
        int n = snprintf (out + used, len - used, "%s%s", used ? ", " : "", names->names[i]);
        if (n < 0)
            break;
        used += (size_t) n;
    }
}

/*  --- field kinds --- */

static bool
s_ends_with (const char *text, const char *suffix)
{
    size_t tlen = strlen (text), slen = strlen (suffix);
    return tlen >= slen && strcmp (text + tlen - slen, suffix) == 0;
}

static bool
s_is_time (const ProtobufCFieldDescriptor *field)
{
    return (field->type == PROTOBUF_C_TYPE_INT64 || field->type == PROTOBUF_C_TYPE_SINT64
            || field->type == PROTOBUF_C_TYPE_SFIXED64)
           && (s_ends_with (field->name, "_at") || s_ends_with (field->name, "_until"));
}

static const char *
s_type_name (ProtobufCType type)
{
    static const char *const names[] = {
        [PROTOBUF_C_TYPE_INT32] = "int32",   [PROTOBUF_C_TYPE_SINT32] = "sint32",
        [PROTOBUF_C_TYPE_SFIXED32] = "sfixed32", [PROTOBUF_C_TYPE_INT64] = "int64",
        [PROTOBUF_C_TYPE_SINT64] = "sint64", [PROTOBUF_C_TYPE_SFIXED64] = "sfixed64",
        [PROTOBUF_C_TYPE_UINT32] = "uint32", [PROTOBUF_C_TYPE_FIXED32] = "fixed32",
        [PROTOBUF_C_TYPE_UINT64] = "uint64", [PROTOBUF_C_TYPE_FIXED64] = "fixed64",
        [PROTOBUF_C_TYPE_FLOAT] = "float",   [PROTOBUF_C_TYPE_DOUBLE] = "double",
        [PROTOBUF_C_TYPE_BOOL] = "bool",     [PROTOBUF_C_TYPE_ENUM] = "enum",
        [PROTOBUF_C_TYPE_STRING] = "string", [PROTOBUF_C_TYPE_BYTES] = "bytes",
        [PROTOBUF_C_TYPE_MESSAGE] = "message",
    };
    return (unsigned) type < sizeof names / sizeof names[0] && names[type] ? names[type] : "?";
}

/*  Size of one element of a repeated field's array, as protobuf-c lays it
    out (enums are int-sized: generated enums force it). */
static size_t
s_elem_size (ProtobufCType type)
{
    switch (type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return sizeof (int64_t);
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof (double);
    case PROTOBUF_C_TYPE_FLOAT:
        return sizeof (float);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof (protobuf_c_boolean);
    case PROTOBUF_C_TYPE_ENUM:
        return sizeof (int);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof (char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof (ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof (ProtobufCMessage *);
    default:
        return sizeof (int32_t);
    }
}

/*  A proto2-style optional scalar or bytes field: presence is its has_
    member. (Optional strings and messages are present when not NULL.) */
static bool
s_has_flag (const ProtobufCFieldDescriptor *field)
{
    return field->label == PROTOBUF_C_LABEL_OPTIONAL
           && !(field->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
           && field->type != PROTOBUF_C_TYPE_STRING && field->type != PROTOBUF_C_TYPE_MESSAGE;
}

/*  A oneof with one member is how our protos spell a proto3 `optional`
    (codec.h): members of one oneof share the case member. */
static bool
s_oneof_is_single (const ProtobufCMessageDescriptor *desc, const ProtobufCFieldDescriptor *field)
{
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *other = &desc->fields[i];
        if (other != field && (other->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
            && other->quantifier_offset == field->quantifier_offset)
            return false;
    }
    return true;
}

/*  protoc names a map field's entry type after the field: "score_by_user"
    -> "ScoreByUserEntry" (descriptor.cc's MapEntryName). */
static bool
s_is_entry_name (const char *short_name, const char *field_name)
{
    bool capital = true;
    const char *p = short_name;
    for (const char *f = field_name; *f; f++) {
        if (*f == '_') {
            capital = true;
            continue;
        }
        char c = capital && *f >= 'a' && *f <= 'z' ? (char) (*f - 'a' + 'A') : *f;
        capital = false;
        if (*p++ != c)
            return false;
    }
    return strcmp (p, "Entry") == 0;
}

/*  protobuf-c keeps no "map entry" flag, so a map is recognised by its
    shape: a repeated message field whose type is nested in the field's
    message, is named after the field, and has exactly key = 1 (an integer,
    bool or string) and value = 2. */
static const ProtobufCMessageDescriptor *
s_map_entry (const ProtobufCMessageDescriptor *desc, const ProtobufCFieldDescriptor *field)
{
    if (field->label != PROTOBUF_C_LABEL_REPEATED || field->type != PROTOBUF_C_TYPE_MESSAGE)
        return NULL;
    const ProtobufCMessageDescriptor *entry = field->descriptor;
    if (entry->n_fields != 2 || entry->fields[0].id != 1 || entry->fields[1].id != 2
        || strcmp (entry->fields[0].name, "key") != 0 || strcmp (entry->fields[1].name, "value") != 0)
        return NULL;
    ProtobufCType key_type = entry->fields[0].type;
    if (key_type == PROTOBUF_C_TYPE_FLOAT || key_type == PROTOBUF_C_TYPE_DOUBLE
        || key_type == PROTOBUF_C_TYPE_ENUM || key_type == PROTOBUF_C_TYPE_BYTES
        || key_type == PROTOBUF_C_TYPE_MESSAGE)
        return NULL;
    size_t parent_len = strlen (desc->name);
    if (strncmp (entry->name, desc->name, parent_len) != 0 || entry->name[parent_len] != '.'
        || strcmp (entry->name + parent_len + 1, entry->short_name) != 0)
        return NULL;
    return s_is_entry_name (entry->short_name, field->name) ? entry : NULL;
}

/*  After a singular field's member was written: make it present. */
static void
s_mark_present (ProtobufCMessage *msg, const ProtobufCFieldDescriptor *field)
{
    char *base = (char *) msg;
    if (field->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        *(uint32_t *) (base + field->quantifier_offset) = field->id;
    else if (s_has_flag (field))
        *(protobuf_c_boolean *) (base + field->quantifier_offset) = 1;
}

/*  The other member already set in `field`'s oneof, or NULL. */
static const ProtobufCFieldDescriptor *
s_oneof_rival (const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *field)
{
    if (!(field->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
        return NULL;
    uint32_t set = *(const uint32_t *) ((const char *) msg + field->quantifier_offset);
    if (set == 0 || set == field->id)
        return NULL;
    return protobuf_c_message_descriptor_get_field (msg->descriptor, set);
}

/*  --- integers ---

    Stores a value in an integer field's member if the field's type can hold
    it; -1 when it cannot. */

static int s_store_unsigned (ProtobufCType type, uint64_t value, void *member);

static int
s_store_signed (ProtobufCType type, int64_t value, void *member)
{
    switch (type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        if (value < INT32_MIN || value > INT32_MAX)
            return -1;
        *(int32_t *) member = (int32_t) value;
        return 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        *(int64_t *) member = value;
        return 0;
    default:
        return value < 0 ? -1 : s_store_unsigned (type, (uint64_t) value, member);
    }
}

static int
s_store_unsigned (ProtobufCType type, uint64_t value, void *member)
{
    switch (type) {
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if (value > UINT32_MAX)
            return -1;
        *(uint32_t *) member = (uint32_t) value;
        return 0;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        *(uint64_t *) member = value;
        return 0;
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return value > INT64_MAX ? -1 : s_store_signed (type, (int64_t) value, member);
    default:
        return -1;
    }
}

/*  --- UTF-8 ---

    Length of the well-formed UTF-8 sequence at `s` (RFC 3629: no overlong
    forms, no surrogates, nothing above U+10FFFF), 0 when there is none. The
    string's NUL stops every check before it reads past the end. */
static size_t
s_utf8_sequence (const unsigned char *s)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    if (c < 0xC2)
        return 0;
    if (c < 0xE0)
        return (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c < 0xF0) {
        unsigned char lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        return s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c < 0xF5) {
        unsigned char lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        return s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 && (s[3] & 0xC0) == 0x80 ? 4
                                                                                         : 0;
    }
    return 0;
}

static bool
s_utf8_valid (const char *text)
{
    const unsigned char *s = (const unsigned char *) text;
    while (*s) {
        size_t n = s_utf8_sequence (s);
        if (!n)
            return false;
        s += n;
    }
    return true;
}

/*  A malloc'ed copy of `text` with every byte that starts no well-formed
    sequence replaced by U+FFFD. */
static char *
s_utf8_repair (const char *text)
{
    const unsigned char *s = (const unsigned char *) text;
    char *copy = malloc (3 * strlen (text) + 1);
    if (!copy)
        return NULL;
    char *out = copy;
    while (*s) {
        size_t n = s_utf8_sequence (s);
        if (n) {
            memcpy (out, s, n);
            out += n;
            s += n;
        }
        else {
            memcpy (out, "\xEF\xBF\xBD", 3);
            out += 3;
            s++;
        }
    }
    *out = 0;
    return copy;
}

/*  --- scalars from text (query and path parameters, map keys) --- */

static int
s_base64_decode (arena_t *arena, const char *text, size_t len, ProtobufCBinaryData *out)
{
    size_t max = len / 4 * 3 + 3;
    unsigned char *bin = arena_alloc (arena, max);
    size_t bin_len = 0;
    if (sodium_base642bin (bin, max, text, len, NULL, &bin_len, NULL,
                           sodium_base64_VARIANT_ORIGINAL)
        != 0)
        return -1;
    out->data = bin;
    out->len = bin_len;
    return 0;
}

static int
s_integer_from_text (const ProtobufCFieldDescriptor *field, const char *text, void *member,
                     char *err, size_t errlen)
{
    const char *digits = text[0] == '-' ? text + 1 : text;
    if (!*digits) {
        snprintf (err, errlen, "expected an integer");
        return -1;
    }
    for (const char *p = digits; *p; p++)
        if (*p < '0' || *p > '9') {
            snprintf (err, errlen, "expected an integer");
            return -1;
        }
    errno = 0;
    int rc;
    if (digits != text) {
        long long value = strtoll (text, NULL, 10);
        rc = errno ? -1 : s_store_signed (field->type, value, member);
    }
    else {
        unsigned long long value = strtoull (text, NULL, 10);
        rc = errno ? -1 : s_store_unsigned (field->type, value, member);
    }
    if (rc)
        snprintf (err, errlen, "out of range for %s", s_type_name (field->type));
    return rc;
}

/*  Converts `text` to a singular value of `field`'s type into `member`. */
static int
s_scalar_from_text (const ProtobufCFieldDescriptor *field, const char *text, arena_t *arena,
                    void *member, char *err, size_t errlen)
{
    switch (field->type) {
    case PROTOBUF_C_TYPE_STRING:
        if (!s_utf8_valid (text)) {
            snprintf (err, errlen, "expected UTF-8 text");
            return -1;
        }
        *(char **) member = arena_strdup (arena, text);
        return 0;
    case PROTOBUF_C_TYPE_BOOL:
        if (strcmp (text, "true") != 0 && strcmp (text, "false") != 0) {
            snprintf (err, errlen, "expected true or false");
            return -1;
        }
        *(protobuf_c_boolean *) member = text[0] == 't';
        return 0;
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE: {
        char *end = NULL;
        double value = isspace ((unsigned char) text[0]) ? NAN : strtod (text, &end);
        if (!end || end == text || *end || !isfinite (value)) {
            snprintf (err, errlen, "expected a number");
            return -1;
        }
        if (field->type == PROTOBUF_C_TYPE_DOUBLE)
            *(double *) member = value;
        else if (fabs (value) > FLT_MAX) {
            snprintf (err, errlen, "out of range for float");
            return -1;
        }
        else
            *(float *) member = (float) value;
        return 0;
    }
    case PROTOBUF_C_TYPE_ENUM: {
        int value;
        if (codec_enum_value (field->descriptor, text, &value)) {
            char choices[200];
            s_enum_choices (field->descriptor, choices, sizeof choices);
            snprintf (err, errlen, "unknown value \"%s\"; expected one of: %s", text, choices);
            return -1;
        }
        *(int *) member = value;
        return 0;
    }
    case PROTOBUF_C_TYPE_BYTES:
        if (s_base64_decode (arena, text, strlen (text), member)) {
            snprintf (err, errlen, "expected standard base64 with padding");
            return -1;
        }
        return 0;
    case PROTOBUF_C_TYPE_MESSAGE:
        snprintf (err, errlen, "cannot be set from text");
        return -1;
    default:
        if (s_is_time (field)) {
            if (clock_parse_rfc3339 (text, member)) {
                snprintf (err, errlen, "expected an RFC 3339 time");
                return -1;
            }
            return 0;
        }
        return s_integer_from_text (field, text, member, err, errlen);
    }
}

/*  --- JSON to protobuf --- */

typedef struct {
    arena_t *arena;
    int depth;                  /* messages entered, the top one included */
    size_t path_len;
    char path[256];             /* "items[2].name"; truncated when longer */
    char *field;
    size_t field_len;
    char *err;
    size_t errlen;
} decoder_t;

/*  Appends to the path and returns its previous length, for s_path_pop. */
__attribute__ ((format (printf, 2, 3))) static size_t
s_path_push (decoder_t *self, const char *fmt, ...)
{
    size_t saved = self->path_len;
    size_t room = sizeof self->path - self->path_len;
    va_list args;
    va_start (args, fmt);
    int n = vsnprintf (self->path + self->path_len, room, fmt, args);
    va_end (args);
    if (n > 0)
        self->path_len += (size_t) n < room ? (size_t) n : room - 1;
    return saved;
}

static void
s_path_pop (decoder_t *self, size_t saved)
{
    self->path_len = saved;
    self->path[saved] = 0;
}

__attribute__ ((format (printf, 2, 3))) static int
s_fail (decoder_t *self, const char *fmt, ...)
{
    if (self->field && self->field_len)
        snprintf (self->field, self->field_len, "%s", self->path);
    if (self->err && self->errlen) {
        va_list args;
        va_start (args, fmt);
        vsnprintf (self->err, self->errlen, fmt, args);
        va_end (args);
    }
    return -1;
}

/*  The error for a JSON value of the wrong type for `field`. */
static int
s_type_error (decoder_t *self, const ProtobufCFieldDescriptor *field)
{
    char choices[200];
    switch (field->type) {
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE:
        return s_fail (self, "expected a number");
    case PROTOBUF_C_TYPE_BOOL:
        return s_fail (self, "expected true or false");
    case PROTOBUF_C_TYPE_ENUM:
        s_enum_choices (field->descriptor, choices, sizeof choices);
        return s_fail (self, "expected a string, one of: %s", choices);
    case PROTOBUF_C_TYPE_STRING:
        return s_fail (self, "expected a string");
    case PROTOBUF_C_TYPE_BYTES:
        return s_fail (self, "expected a base64 string");
    case PROTOBUF_C_TYPE_MESSAGE:
        return s_fail (self, "expected a JSON object");
    default:
        return s_is_time (field) ? s_fail (self, "expected an RFC 3339 time string")
                                 : s_fail (self, "expected an integer");
    }
}

static int s_message_from_json (decoder_t *self, const ProtobufCMessageDescriptor *desc,
                                json_t *json, ProtobufCMessage **out);

/*  One non-null value of `field`'s type into `member`. */
static int
s_value_from_json (decoder_t *self, const ProtobufCFieldDescriptor *field, json_t *value,
                   void *member)
{
    char message[300];
    switch (field->type) {
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE:
        if (!json_is_number (value))
            return s_type_error (self, field);
        if (field->type == PROTOBUF_C_TYPE_DOUBLE)
            *(double *) member = json_number_value (value);
        else if (fabs (json_number_value (value)) > FLT_MAX)
            return s_fail (self, "out of range for float");
        else
            *(float *) member = (float) json_number_value (value);
        return 0;
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_is_boolean (value))
            return s_type_error (self, field);
        *(protobuf_c_boolean *) member = json_is_true (value);
        return 0;
    case PROTOBUF_C_TYPE_ENUM:
        if (!json_is_string (value))
            return s_type_error (self, field);
        if (strlen (json_string_value (value)) != json_string_length (value))
            return s_fail (self, "must not contain NUL characters");
        if (s_scalar_from_text (field, json_string_value (value), self->arena, member, message,
                                sizeof message))
            return s_fail (self, "%s", message);
        return 0;
    case PROTOBUF_C_TYPE_STRING:
        if (!json_is_string (value))
            return s_type_error (self, field);
        if (strlen (json_string_value (value)) != json_string_length (value))
            return s_fail (self, "must not contain NUL characters");
        *(char **) member = arena_strndup (self->arena, json_string_value (value),
                                           json_string_length (value));
        return 0;
    case PROTOBUF_C_TYPE_BYTES:
        if (!json_is_string (value))
            return s_type_error (self, field);
        if (s_base64_decode (self->arena, json_string_value (value), json_string_length (value),
                             member))
            return s_fail (self, "expected standard base64 with padding");
        return 0;
    case PROTOBUF_C_TYPE_MESSAGE:
        return s_message_from_json (self, field->descriptor, value, (ProtobufCMessage **) member);
    default:
        break;
    }
    if (s_is_time (field)) {
        if (!json_is_string (value) || clock_parse_rfc3339 (json_string_value (value), member))
            return s_type_error (self, field);
        return 0;
    }
    /*  Integers. 1e3 and 5.0 arrive as reals: accepted when whole. */
    int64_t number;
    if (json_is_integer (value))
        number = json_integer_value (value);
    else if (json_is_real (value) && json_real_value (value) == floor (json_real_value (value))) {
        double real = json_real_value (value);
        if (real < -9223372036854775808.0 || real >= 9223372036854775808.0)
            return s_fail (self, "out of range for %s", s_type_name (field->type));
        number = (int64_t) real;
    }
    else
        return s_type_error (self, field);
    if (s_store_signed (field->type, number, member))
        return s_fail (self, "out of range for %s", s_type_name (field->type));
    return 0;
}

static int
s_array_from_json (decoder_t *self, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *field,
                   json_t *value)
{
    if (json_is_null (value))
        return 0;
    if (!json_is_array (value))
        return s_fail (self, "expected an array");
    size_t count = json_array_size (value);
    if (count > CODEC_MAX_ITEMS)
        return s_fail (self, "too many elements (at most %d)", CODEC_MAX_ITEMS);
    size_t size = s_elem_size (field->type);
    char *items = count ? arena_alloc (self->arena, count * size) : NULL;
    /*  null is an element's JSON form only for enum 0 and time 0. */
    bool null_is_zero = field->type == PROTOBUF_C_TYPE_ENUM || s_is_time (field);
    for (size_t i = 0; i < count; i++) {
        json_t *item = json_array_get (value, i);
        size_t saved = s_path_push (self, "[%zu]", i);
        if (json_is_null (item)) {
            if (!null_is_zero)
                return s_type_error (self, field);
        }
        else if (s_value_from_json (self, field, item, items + i * size))
            return -1;
        s_path_pop (self, saved);
    }
    *(size_t *) ((char *) msg + field->quantifier_offset) = count;
    *(void **) ((char *) msg + field->offset) = items;
    return 0;
}

static int
s_map_from_json (decoder_t *self, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *field,
                 const ProtobufCMessageDescriptor *entry_desc, json_t *value)
{
    if (json_is_null (value))
        return 0;
    if (!json_is_object (value))
        return s_fail (self, "expected a JSON object");
    size_t count = json_object_size (value);
    if (count > CODEC_MAX_ITEMS)
        return s_fail (self, "too many entries (at most %d)", CODEC_MAX_ITEMS);
    ProtobufCMessage **entries = count ? arena_alloc (self->arena, count * sizeof *entries) : NULL;
    const ProtobufCFieldDescriptor *key_field = &entry_desc->fields[0];
    const ProtobufCFieldDescriptor *value_field = &entry_desc->fields[1];
    size_t filled = 0;
    const char *key;
    json_t *item;
    json_object_foreach (value, key, item) {
        size_t saved = s_path_push (self, ".%s", key);
        ProtobufCMessage *entry = arena_msg (self->arena, entry_desc);
        char message[300];
        if (s_scalar_from_text (key_field, key, self->arena, (char *) entry + key_field->offset,
                                message, sizeof message))
            return s_fail (self, "invalid key: %s", message);
        s_mark_present (entry, key_field);
        if (!json_is_null (item)) {
            if (s_value_from_json (self, value_field, item, (char *) entry + value_field->offset))
                return -1;
            s_mark_present (entry, value_field);
        }
        entries[filled++] = entry;
        s_path_pop (self, saved);
    }
    *(size_t *) ((char *) msg + field->quantifier_offset) = filled;
    *(void **) ((char *) msg + field->offset) = entries;
    return 0;
}

static int
s_field_from_json (decoder_t *self, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *field,
                   json_t *value)
{
    if (field->label == PROTOBUF_C_LABEL_REPEATED) {
        const ProtobufCMessageDescriptor *entry = s_map_entry (msg->descriptor, field);
        return entry ? s_map_from_json (self, msg, field, entry, value)
                     : s_array_from_json (self, msg, field, value);
    }
    if (json_is_null (value))
        return 0;
    const ProtobufCFieldDescriptor *rival = s_oneof_rival (msg, field);
    if (rival)
        return s_fail (self, "conflicts with \"%s\": only one of them may be set", rival->name);
    if (s_value_from_json (self, field, value, (char *) msg + field->offset))
        return -1;
    s_mark_present (msg, field);
    return 0;
}

static int
s_message_from_json (decoder_t *self, const ProtobufCMessageDescriptor *desc, json_t *json,
                     ProtobufCMessage **out)
{
    if (!json_is_object (json))
        return s_fail (self, "expected a JSON object");
    if (self->depth >= CODEC_MAX_DEPTH)
        return s_fail (self, "nested too deeply (at most %d levels)", CODEC_MAX_DEPTH);
    self->depth++;
    ProtobufCMessage *msg = arena_msg (self->arena, desc);
    const char *key;
    json_t *value;
    json_object_foreach (json, key, value) {
        size_t saved = s_path_push (self, self->path_len ? ".%s" : "%s", key);
        const ProtobufCFieldDescriptor *field
            = protobuf_c_message_descriptor_get_field_by_name (desc, key);
        if (!field)
            return s_fail (self, "unknown field");
        if (s_field_from_json (self, msg, field, value))
            return -1;
        s_path_pop (self, saved);
    }
    self->depth--;
    *out = msg;
    return 0;
}

int
codec_from_json (const ProtobufCMessageDescriptor *desc, const json_t *json, arena_t *arena,
                 ProtobufCMessage **out, char *field, size_t field_len, char *err, size_t errlen)
{
    decoder_t self = {.arena = arena,
                      .field = field,
                      .field_len = field_len,
                      .err = err,
                      .errlen = errlen};
    *out = NULL;
    /*  jansson's API takes json_t * even where it only reads. */
    ProtobufCMessage *msg = NULL;
    if (s_message_from_json (&self, desc, (json_t *) json, &msg))
        return -1;
    *out = msg;
    return 0;
}

/*  --- text to one top-level field --- */

int
codec_set_text (ProtobufCMessage *msg, const char *field_name, const char *text, arena_t *arena,
                char *err, size_t errlen)
{
    char scratch[8];
    if (!err || !errlen) {
        err = scratch;
        errlen = sizeof scratch;
    }
    const ProtobufCFieldDescriptor *field
        = protobuf_c_message_descriptor_get_field_by_name (msg->descriptor, field_name);
    if (!field) {
        snprintf (err, errlen, "unknown field \"%s\"", field_name);
        return -1;
    }
    if (field->type == PROTOBUF_C_TYPE_MESSAGE) {
        snprintf (err, errlen, "cannot be set from text");
        return -1;
    }
    if (field->label != PROTOBUF_C_LABEL_REPEATED) {
        const ProtobufCFieldDescriptor *rival = s_oneof_rival (msg, field);
        if (rival) {
            snprintf (err, errlen, "conflicts with \"%s\": only one of them may be set",
                      rival->name);
            return -1;
        }
        if (s_scalar_from_text (field, text, arena, (char *) msg + field->offset, err, errlen))
            return -1;
        s_mark_present (msg, field);
        return 0;
    }
    /*  Repeated: comma-separated elements, replacing what the field held. */
    size_t count = *text ? 1 : 0;
    for (const char *p = text; *p; p++)
        count += *p == ',';
    if (count > CODEC_MAX_ITEMS) {
        snprintf (err, errlen, "too many elements (at most %d)", CODEC_MAX_ITEMS);
        return -1;
    }
    size_t size = s_elem_size (field->type);
    char *items = count ? arena_alloc (arena, count * size) : NULL;
    const char *start = text;
    for (size_t i = 0; i < count; i++) {
        const char *end = strchr (start, ',');
        size_t len = end ? (size_t) (end - start) : strlen (start);
        char message[300];
        const char *piece = arena_strndup (arena, start, len);
        if (len == 0) {
            snprintf (err, errlen, "element %zu: empty", i);
            return -1;
        }
        if (s_scalar_from_text (field, piece, arena, items + i * size, message, sizeof message)) {
            snprintf (err, errlen, "element %zu: %s", i, message);
            return -1;
        }
        start += len + 1;
    }
    *(size_t *) ((char *) msg + field->quantifier_offset) = count;
    *(void **) ((char *) msg + field->offset) = items;
    return 0;
}

/*  --- protobuf to JSON --- */

static json_t *
s_string_to_json (const char *text)
{
    if (!text)
        return json_string_nocheck ("");
    if (s_utf8_valid (text))
        return json_string_nocheck (text);
    char *repaired = s_utf8_repair (text);
    json_t *value = repaired ? json_string_nocheck (repaired) : NULL;
    free (repaired);
    return value;
}

static json_t *
s_bytes_to_json (const ProtobufCBinaryData *bytes)
{
    if (bytes->len == 0)
        return json_string_nocheck ("");
    size_t size = sodium_base64_ENCODED_LEN (bytes->len, sodium_base64_VARIANT_ORIGINAL);
    char *text = malloc (size);
    if (!text)
        return NULL;
    sodium_bin2base64 (text, size, bytes->data, bytes->len, sodium_base64_VARIANT_ORIGINAL);
    json_t *value = json_string_nocheck (text);
    free (text);
    return value;
}

static json_t *
s_time_to_json (int64_t unix_ms, bool zero_is_null)
{
    if ((unix_ms == 0 && zero_is_null) || unix_ms < TIME_MIN_MS || unix_ms > TIME_MAX_MS)
        return json_null ();
    char text[40];
    clock_format_rfc3339 (unix_ms, text, sizeof text);
    return json_string_nocheck (text);
}

/*  A float as the double of its shortest decimal form, so 0.1f is emitted
    as 0.1 and not as 0.10000000149011612. */
static json_t *
s_float_to_json (float value)
{
    if (!isfinite (value))
        return json_null ();
    char text[32];
    for (int precision = 1; precision <= 9; precision++) {
        snprintf (text, sizeof text, "%.*g", precision, (double) value);
        if (strtof (text, NULL) == value)
            break;
    }
    return json_real (strtod (text, NULL));
}

static json_t *s_message_to_json (const ProtobufCMessage *msg, int depth);

/*  One value of `field` from `member`. A time of 0 is null unless the field
    has presence and is present (`zero_is_null` false). */
static json_t *
s_value_to_json (const ProtobufCFieldDescriptor *field, const void *member, bool zero_is_null,
                 int depth)
{
    switch (field->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return json_integer (*(const int32_t *) member);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return json_integer (*(const uint32_t *) member);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if (s_is_time (field))
            return s_time_to_json (*(const int64_t *) member, zero_is_null);
        return json_integer (*(const int64_t *) member);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: {
        uint64_t value = *(const uint64_t *) member;
        return value <= INT64_MAX ? json_integer ((json_int_t) value) : json_real ((double) value);
    }
    case PROTOBUF_C_TYPE_FLOAT:
        return s_float_to_json (*(const float *) member);
    case PROTOBUF_C_TYPE_DOUBLE: {
        double value = *(const double *) member;
        return isfinite (value) ? json_real (value) : json_null ();
    }
    case PROTOBUF_C_TYPE_BOOL:
        return json_boolean (*(const protobuf_c_boolean *) member);
    case PROTOBUF_C_TYPE_ENUM: {
        const char *name = codec_enum_name (field->descriptor, *(const int *) member);
        return name ? json_string_nocheck (name) : json_null ();
    }
    case PROTOBUF_C_TYPE_STRING:
        return s_string_to_json (*(char *const *) member);
    case PROTOBUF_C_TYPE_BYTES:
        return s_bytes_to_json (member);
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *) member;
        return sub ? s_message_to_json (sub, depth + 1) : json_null ();
    }
    default:
        return NULL;
    }
}

static json_t *
s_array_to_json (const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *field, int depth)
{
    size_t count = *(const size_t *) ((const char *) msg + field->quantifier_offset);
    const char *items = *(char *const *) ((const char *) msg + field->offset);
    size_t size = s_elem_size (field->type);
    json_t *array = json_array ();
    for (size_t i = 0; array && i < count; i++)
        if (json_array_append_new (array, s_value_to_json (field, items + i * size, true, depth))) {
            json_decref (array);
            return NULL;
        }
    return array;
}

static json_t *
s_map_to_json (const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *field,
               const ProtobufCMessageDescriptor *entry_desc, int depth)
{
    size_t count = *(const size_t *) ((const char *) msg + field->quantifier_offset);
    ProtobufCMessage *const *entries = *(ProtobufCMessage **const *) ((const char *) msg
                                                                      + field->offset);
    const ProtobufCFieldDescriptor *key_field = &entry_desc->fields[0];
    const ProtobufCFieldDescriptor *value_field = &entry_desc->fields[1];
    json_t *object = json_object ();
    for (size_t i = 0; object && i < count; i++) {
        const char *base = (const char *) entries[i];
        if (!base)
            continue;
        const void *key_member = base + key_field->offset;
        char number[24];
        const char *key = number;
        char *repaired = NULL;
        switch (key_field->type) {
        case PROTOBUF_C_TYPE_STRING:
            key = *(char *const *) key_member ? *(char *const *) key_member : "";
            if (!s_utf8_valid (key))
                key = repaired = s_utf8_repair (key);
            break;
        case PROTOBUF_C_TYPE_BOOL:
            key = *(const protobuf_c_boolean *) key_member ? "true" : "false";
            break;
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32:
            snprintf (number, sizeof number, "%d", (int) *(const int32_t *) key_member);
            break;
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32:
            snprintf (number, sizeof number, "%u", (unsigned) *(const uint32_t *) key_member);
            break;
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64:
            snprintf (number, sizeof number, "%llu",
                      (unsigned long long) *(const uint64_t *) key_member);
            break;
        default:
            snprintf (number, sizeof number, "%lld", (long long) *(const int64_t *) key_member);
            break;
        }
        json_t *value = key ? s_value_to_json (value_field, base + value_field->offset, true, depth)
                            : NULL;
        int rc = value ? json_object_set_new (object, key, value) : -1;
        free (repaired);
        if (rc) {
            json_decref (object);
            return NULL;
        }
    }
    return object;
}

static json_t *
s_message_to_json (const ProtobufCMessage *msg, int depth)
{
    if (depth > CODEC_MAX_DEPTH)
        return NULL;
    const ProtobufCMessageDescriptor *desc = msg->descriptor;
    const char *base = (const char *) msg;
    json_t *object = json_object ();
    for (unsigned i = 0; object && i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *field = &desc->fields[i];
        const void *member = base + field->offset;
        json_t *value;
        if (field->label == PROTOBUF_C_LABEL_REPEATED) {
            const ProtobufCMessageDescriptor *entry = s_map_entry (desc, field);
            value = entry ? s_map_to_json (msg, field, entry, depth)
                          : s_array_to_json (msg, field, depth);
        }
        else if (field->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t set = *(const uint32_t *) (base + field->quantifier_offset);
            if (set == field->id)
                value = s_value_to_json (field, member, false, depth);
            else if (s_oneof_is_single (desc, field))
                value = json_null ();
            else
                continue;
        }
        else if (field->label == PROTOBUF_C_LABEL_OPTIONAL) {
            bool present;
            if (s_has_flag (field))
                present = *(const protobuf_c_boolean *) (base + field->quantifier_offset);
            else {
                const void *pointer = *(void *const *) member;
                present = pointer && pointer != field->default_value;
            }
            value = present ? s_value_to_json (field, member, false, depth) : json_null ();
        }
        else
            value = s_value_to_json (field, member, true, depth);
        if (!value || json_object_set_new (object, field->name, value)) {
            json_decref (object);
            return NULL;
        }
    }
    return object;
}

json_t *
codec_to_json (const ProtobufCMessage *msg)
{
    return msg ? s_message_to_json (msg, 1) : NULL;
}
