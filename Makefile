# tollgate — the two commands that matter: `make run` and `make test`.
GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
POLICIES    ?= examples/quickstart

.PHONY: run test test-short lint bench golden build clean

## run: serve examples/quickstart (xDS on 127.0.0.1:18000, admin on 127.0.0.1:19000)
run:
	$(GO) run ./cmd/tollgate serve --policies $(POLICIES)

## test: every check CI runs: formatting, vet, staticcheck, all tests with the race detector
test: lint
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

build:
	$(GO) build -o bin/tollgate ./cmd/tollgate

clean:
	rm -rf bin
