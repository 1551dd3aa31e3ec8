# Parta build. `make` builds everything into build/ (build/san/ with
# SANITIZE=1); protobuf code is generated into $(BUILD)/gen/ by protoc-c.
# `make run` and `make test` first install missing Debian packages (deps).

SANITIZE ?=
ifeq ($(SANITIZE),1)
BUILD ?= build/san
SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD ?= build
SANFLAGS =
endif

CC ?= cc
PKGS = libczmq libzmq libprotobuf-c hiredis sqlite3 libsodium jansson libwebsockets
# Recursive (=) on purpose: pkg-config must not run before `deps` installed it.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lmagic -lstemmer -lm -lpthread
# The gateway's event loop: libev (Debian ships no .pc for it). lws loads
# its libev glue at run time (libwebsockets-evlib-ev).
GATEWAY_LIBS = -lev
CFLAGS ?= -O2 -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-missing-field-initializers -Wno-format-truncation \
	-Icommon -Igateway -I$(BUILD)/gen $(PKG_CFLAGS) $(SANFLAGS) $(CFLAGS)
LDFLAGS_ALL = $(SANFLAGS) $(LDFLAGS)

PROTOS = $(wildcard proto/*.proto)
GEN_C = $(patsubst proto/%.proto,$(BUILD)/gen/%.pb-c.c,$(PROTOS))
GEN_H = $(GEN_C:.c=.h)
GEN_O = $(patsubst $(BUILD)/gen/%.c,$(BUILD)/obj/gen/%.o,$(GEN_C))

TEST_PROTOS = $(wildcard tests/proto/*.proto)
TEST_GEN_C = $(patsubst tests/proto/%.proto,$(BUILD)/gen/%.pb-c.c,$(TEST_PROTOS))
GEN_H += $(TEST_GEN_C:.c=.h)
TEST_GEN_O = $(patsubst $(BUILD)/gen/%.c,$(BUILD)/obj/gen/%.o,$(TEST_GEN_C))

COMMON_SRC = $(wildcard common/*.c)
COMMON_O = $(patsubst %.c,$(BUILD)/obj/%.o,$(COMMON_SRC))
LIB = $(BUILD)/lib/libparta.a

SERVICES = broker identity org invite chat meet audit
SERVICE_BINS = $(patsubst %,$(BUILD)/bin/parta-%,$(SERVICES))
GATEWAY_SRC = $(wildcard gateway/*.c)
GATEWAY_O = $(patsubst %.c,$(BUILD)/obj/%.o,$(GATEWAY_SRC))
GATEWAY_BIN = $(BUILD)/bin/parta-gateway

UNIT_SRC = $(wildcard tests/unit/test_*.c)
UNIT_BINS = $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
SVC_TEST_SRC = $(wildcard tests/service/test_*.c)
SVC_TEST_BINS = $(patsubst tests/service/%.c,$(BUILD)/tests/%,$(SVC_TEST_SRC))
TEST_HELPER_SRC = $(filter-out $(SVC_TEST_SRC),$(wildcard tests/service/*.c))
TEST_HELPER_O = $(patsubst %.c,$(BUILD)/obj/%.o,$(filter-out tests/service/echo_worker.c,$(TEST_HELPER_SRC))) $(TEST_GEN_O)
BENCH_SRC = $(wildcard tests/bench/*.c)
BENCH_BINS = $(patsubst tests/bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))

.PHONY: all deps run test bench clean format
.SECONDARY:

all: $(SERVICE_BINS) $(GATEWAY_BIN) $(UNIT_BINS) $(SVC_TEST_BINS) $(BUILD)/bin/parta-echo-worker $(BENCH_BINS)

deps:
	@scripts/deps.sh

# Sub-makes, so that pkg-config runs after deps has installed what it needs.
run: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) scripts/run.sh

test: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) scripts/test.sh

bench: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) scripts/bench.sh

clean:
	rm -rf build

# --- generated protobuf code ---
$(BUILD)/gen/%.pb-c.c $(BUILD)/gen/%.pb-c.h: proto/%.proto
	@mkdir -p $(BUILD)/gen
	protoc-c --proto_path=proto --c_out=$(BUILD)/gen $<

$(BUILD)/gen/%.pb-c.c $(BUILD)/gen/%.pb-c.h: tests/proto/%.proto
	@mkdir -p $(BUILD)/gen
	protoc-c --proto_path=tests/proto --c_out=$(BUILD)/gen $<

$(BUILD)/obj/gen/%.o: $(BUILD)/gen/%.c $(GEN_H)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Wno-unused-parameter -Wno-missing-braces -c $< -o $@

# Every object may include any generated header.
$(BUILD)/obj/%.o: %.c $(GEN_H) $(wildcard common/*.h) $(wildcard gateway/*.h) $(wildcard services/*/*.h) $(wildcard tests/service/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(LIB): $(COMMON_O) $(GEN_O)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# A service is every .c in its directory.
define SERVICE_RULE
$(BUILD)/bin/parta-$(1): $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard services/$(1)/*.c)) $(LIB)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(LDFLAGS_ALL) -o $$@ $$^ $$(PKG_LIBS)
endef
$(foreach s,$(SERVICES),$(eval $(call SERVICE_RULE,$(s))))

$(GATEWAY_BIN): $(GATEWAY_O) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS) $(GATEWAY_LIBS)

$(BUILD)/bin/parta-echo-worker: $(BUILD)/obj/tests/service/echo_worker.o $(TEST_HELPER_O) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS)

# Unit tests may link gateway objects (all but its main).
GATEWAY_LIB_O = $(filter-out $(BUILD)/obj/gateway/gw_main.o,$(GATEWAY_O))
$(BUILD)/tests/test_%: $(BUILD)/obj/tests/unit/test_%.o $(GATEWAY_LIB_O) $(TEST_GEN_O) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS) $(GATEWAY_LIBS) -lcmocka -lcurl

# Unit tests of a service's module link that module.
$(BUILD)/tests/test_fts: $(BUILD)/obj/services/chat/chat_fts.o
$(BUILD)/tests/test_chat_store: $(BUILD)/obj/services/chat/chat_store.o $(BUILD)/obj/services/chat/chat_fts.o

$(BUILD)/tests/test_%: $(BUILD)/obj/tests/service/test_%.o $(TEST_HELPER_O) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS) -lcmocka -lcurl

# Benchmarks may use libcurl as the tests do (chat_bench posts with it).
$(BUILD)/bench/%: $(BUILD)/obj/tests/bench/%.o $(TEST_HELPER_O) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PKG_LIBS) -lcurl

format:
	clang-format -i common/*.[ch] gateway/*.[ch] services/*/*.[ch] tests/*/*.[ch]
