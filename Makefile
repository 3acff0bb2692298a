# tollgate — the two commands that matter: `make run` and `make test`.
GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
POLICIES    ?= examples/quickstart

.PHONY: run test test-short lint bench golden build clean spire ratelimit

## run: serve examples/quickstart (xDS on 127.0.0.1:18000, admin on 127.0.0.1:19000)
run:
	$(GO) run ./cmd/tollgate serve --policies $(POLICIES)

## test: every check CI runs: formatting, vet, staticcheck, all tests with the race detector;
## the integration tests fail rather than skip when SPIRE, ratelimit or redis-server is missing
test: lint spire ratelimit
	TOLLGATE_REQUIRE_INTEGRATION=1 $(GO) test -race -count=1 ./...

## test-short: the tests without the long load tests, for quick iteration
test-short:
	$(GO) test -short -count=1 ./...

lint:
	@unformatted="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

## bench: the benchmarks whose figures the README quotes
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./translate ./xds ./store

## golden: regenerate translate goldens after an intended output change; review the diff
golden:
	$(GO) test ./translate -update

## spire: build spire-server and spire-agent (pinned in xds/spiretest/tools/go.mod) into .cache/bin
## for the SPIRE integration tests; rebuilt only when missing or when the tools module changed
SPIRE_TOOLS := xds/spiretest/tools
SPIRE_BIN   := .cache/bin
spire: $(SPIRE_BIN)/spire-server $(SPIRE_BIN)/spire-agent

$(SPIRE_BIN)/spire-server $(SPIRE_BIN)/spire-agent &: $(SPIRE_TOOLS)/go.mod $(SPIRE_TOOLS)/go.sum
	cd $(SPIRE_TOOLS) && $(GO) build -o $(CURDIR)/$(SPIRE_BIN)/ github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent
	@touch $(SPIRE_BIN)/spire-server $(SPIRE_BIN)/spire-agent

## ratelimit: build envoyproxy/ratelimit (RATELIMIT_VERSION) into .cache/bin/ratelimit for the
## rate limit integration tests (xds/ratelimittest), out of tollgate's go.mod; rebuilt only when
## missing or when RATELIMIT_VERSION changed. redis-server comes from the system (apt).
RATELIMIT_VERSION ?= v1.4.1-0.20260122083618-3fb702589d36
RATELIMIT_STAMP   := $(SPIRE_BIN)/ratelimit.version
ratelimit: $(SPIRE_BIN)/ratelimit

$(SPIRE_BIN)/ratelimit: $(RATELIMIT_STAMP)
	GOFLAGS=-mod=mod GOWORK=off GOBIN=$(CURDIR)/$(SPIRE_BIN) $(GO) install github.com/envoyproxy/ratelimit/src/service_cmd@$(RATELIMIT_VERSION)
	mv -f $(SPIRE_BIN)/service_cmd $@
	@touch $@

# The stamp holds the version built; rewritten (and so newer than the
# binary) only when RATELIMIT_VERSION differs from it.
$(RATELIMIT_STAMP): FORCE
	@mkdir -p $(@D)
	@[ "$$(cat $@ 2>/dev/null)" = "$(RATELIMIT_VERSION)" ] || echo "$(RATELIMIT_VERSION)" > $@

FORCE:

build:
	$(GO) build -o bin/tollgate ./cmd/tollgate

clean:
	rm -rf bin
