/*  codec: the one JSON <-> protobuf conversion of the HTTP API. The gateway
    decodes every request body into the bus method's request message and
    encodes every reply message as JSON, both by walking protobuf-c
    descriptors, so no endpoint writes JSON by hand.

    The rules below are the project's rules for .proto files that reach the
    API; a proto field's name, type and label decide its JSON form.

    - JSON field names are the proto field names (snake_case), exactly. An
      unknown JSON field is an error naming it.
    - Integers (int32, sint32, sfixed32, uint32, fixed32 and the 64-bit kinds)
      are JSON integers. A number with a fraction, a string, a boolean or a
      value out of the field's range is an error. A number written with an
      exponent or ".0" that is a whole number (1e3, 5.0) is accepted. JSON
      integers are signed 64-bit, so uint64/fixed64 carry 0..2^63-1; a larger
      value is emitted as the nearest double.
    - Times: an int64, sint64 or sfixed64 field whose name ends in "_at" or
      "_until" holds unix milliseconds in protobuf and an RFC 3339 string in
      JSON. Input accepts any offset ("2026-11-28T12:00:00+03:00"); output is
      UTC ("2026-11-28T09:00:00Z", with ".250" when not whole seconds). A
      number is an error. 0 means "no time" and is emitted as null (unless the
      field has presence and is present); values outside years 0000-9999 are
      emitted as null too.
    - float and double are JSON numbers (integers accepted); NaN and
      infinities are emitted as null. A double outside float's range is an
      error for a float field.
    - bool is true or false only.
    - string is a JSON string without NUL characters. Text that is not valid
      UTF-8 (a service bug) is emitted with U+FFFD in place of bad bytes.
    - bytes are standard base64 with padding ("AAEC/w==").
    - enums are JSON strings: the value's proto name lowercased, without the
      prefix UPPER_SNAKE(enum's short name) + "_" when it has it
      (UnitKind.UNIT_KIND_DEPARTMENT -> "department", Status.BAD_REQUEST ->
      "bad_request", HTTP2Method.HTTP2_METHOD_GET -> "get"). Value 0 (the
      *_UNSPECIFIED default) and numbers no value has are emitted as null;
      value 0 is never accepted by name, and an unknown name is an error
      whose message lists the accepted names.
    - Messages are JSON objects; a message field that is NULL is null.
    - Repeated fields are JSON arrays (null reads as empty). Elements follow
      the rules above; null elements are accepted only where null is a value's
      JSON form (enum 0, time 0). At most CODEC_MAX_ITEMS elements.
    - Maps (map<K, V>, which protoc-c generates as repeated KEntry messages)
      are JSON objects; keys are strings in JSON ("7" for an integer key,
      "true"/"false" for a bool key). At most CODEC_MAX_ITEMS entries.
    - Nesting: at most CODEC_MAX_DEPTH levels of messages, the top one
      included.
    - null for a singular field means "absent": the field keeps its default.
    - Presence. Plain proto3 fields (label NONE) are always emitted (0, "",
      false, [], {}, and null for enum 0, time 0 and a NULL message). A field
      with presence is emitted as null when absent and marked present when
      given in JSON. protoc-c 1.4 rejects proto3 `optional`, so in our protos
      a field with presence is written as the oneof protoc would synthesise
      for it, one member named after the field:
          oneof _expires_at { int64 expires_at = 6; }
      A oneof with a single member is treated as such an optional field.
      Never make bytes the first member of a oneof (so no optional bytes):
      protoc-c's initializer for it trips -Wmissing-braces, an error in our
      build.
      proto2-style LABEL_OPTIONAL fields (a has_ member, or NULL for strings
      and messages) are handled the same way.
    - oneof with several members: only the member set is emitted (none when
      none is); giving two members of one oneof in JSON is an error naming
      the second.
    - Output lists fields in descriptor order, so it never depends on hashing.

    Error paths name the offending field from the top: "admin.phone",
    "items[2].name", "labels.some_key" for a map entry, "" for the body as a
    whole. */
#ifndef PARTA_CODEC_H
#define PARTA_CODEC_H

#include "arena.h"

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

#define CODEC_MAX_DEPTH 16      /* message nesting, the top message included */
#define CODEC_MAX_ITEMS 1000    /* elements of one repeated field or map */

/*  Decodes a JSON object into a new message of `desc` allocated from `arena`
    (every string, array and sub-message too: arena_reset frees it all).
    Returns 0 and sets *out; on failure returns -1, sets *out to NULL, writes
    the offending field's path into field/field_len and a human message into
    err/errlen (either buffer may be NULL). */
int codec_from_json (const ProtobufCMessageDescriptor *desc, const json_t *json, arena_t *arena,
                     ProtobufCMessage **out, char *field, size_t field_len, char *err,
                     size_t errlen);

/*  Sets one top-level field from text (path and query parameters:
    "{org_id}", "?limit=20", "?status=active"), converting it to the field's
    type: string (valid UTF-8), integers (decimal, optional '-', nothing
    else), bool "true"/"false", float/double, enum by JSON name, bytes as
    base64, RFC 3339 for time fields. A repeated field is replaced by the
    comma-separated elements of `text` ("" gives none; an empty element is an
    error). A field with presence becomes present; setting a oneof member
    whose oneof already has another member set is an error. Message and map
    fields cannot be set from text. Memory comes from `arena`. Returns -1
    with err on a bad value or an unknown field name. */
int codec_set_text (ProtobufCMessage *msg, const char *field_name, const char *text,
                    arena_t *arena, char *err, size_t errlen);

/*  Encodes a message as a new JSON object, which the caller json_decref's.
    NULL when out of memory or when `msg` nests deeper than CODEC_MAX_DEPTH
    (nothing codec_from_json accepted does). */
json_t *codec_to_json (const ProtobufCMessage *msg);

/*  The JSON name of an enum value ("department" for UNIT_KIND_DEPARTMENT of
    enum UnitKind); NULL for 0 and for numbers the enum does not have. Names
    are computed once per enum and kept for the life of the process; safe
    from any thread. */
const char *codec_enum_name (const ProtobufCEnumDescriptor *desc, int value);

/*  The value whose JSON name is `name`: 0 and *value set, or -1 when no
    value has that name (the JSON name of value 0 included). */
int codec_enum_value (const ProtobufCEnumDescriptor *desc, const char *name, int *value);

#endif
