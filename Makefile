# tollgate — the two commands that matter: `make run` and `make test`.
GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
POLICIES    ?= examples/quickstart

.PHONY: run test test-short lint bench golden build clean spire

## run: serve examples/quickstart (xDS on 127.0.0.1:18000, admin on 127.0.0.1:19000)
run:
	$(GO) run ./cmd/tollgate serve --policies $(POLICIES)

## test: every check CI runs: formatting, vet, staticcheck, all tests with the race detector
test: lint spire
	$(GO) test -race -count=1 ./...

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
	$(GO) test -run '^$$' -bench . -benchmem ./translate ./xds

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

build:
	$(GO) build -o bin/tollgate ./cmd/tollgate

clean:
	rm -rf bin
