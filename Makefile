# tollgate — the two commands that matter: `make run` and `make test`.
GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
POLICIES    ?= examples/quickstart

.PHONY: run test test-short lint bench load golden build clean spire ratelimit dist dist-check

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

## load: the fleet load tool (cmd/tollgate-load) against tollgate and a bare go-control-plane
## server with the same resources, e.g. make load LOAD_ARGS='--envoys 10000 --edits 5'
LOAD_ARGS ?= --envoys 1000
load:
	$(GO) build -o $(SPIRE_BIN)/ ./cmd/tollgate ./cmd/tollgate-load
	$(SPIRE_BIN)/tollgate-load $(LOAD_ARGS)

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

## dist: release artefacts in dist/ for each of DIST_ARCHES: a static binary, a tarball
## (binary, systemd units, default config, README), a .deb and an .rpm (nfpm, deploy/nfpm.yaml,
## out of tollgate's go.mod), and SHA256SUMS. Stamped with VERSION, COMMIT and DATE;
## SOURCE_DATE_EPOCH (default: the last commit's time) dates every file, so that the same
## commit gives the same bytes.
NFPM        ?= github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
DIST        ?= dist
DIST_ARCHES ?= amd64 arm64
MAINTAINER  ?= tollgate developers <https://github.com/tollgate-dev/tollgate/issues>
# Each computed once, when first used (not at all by the other targets).
VERSION           ?= $(eval VERSION := $$(shell git describe --tags --always --dirty 2>/dev/null || echo dev))$(VERSION)
COMMIT            ?= $(eval COMMIT := $$(shell git rev-parse HEAD 2>/dev/null))$(COMMIT)
SOURCE_DATE_EPOCH ?= $(eval SOURCE_DATE_EPOCH := $$(shell git log -1 --format=%ct 2>/dev/null || date +%s))$(SOURCE_DATE_EPOCH)
DATE              ?= $(eval DATE := $$(shell date -u -d @$(SOURCE_DATE_EPOCH) +%Y-%m-%dT%H:%M:%SZ))$(DATE)
PKG_VERSION       ?= $(eval PKG_VERSION := $$(shell sh deploy/pkgversion.sh '$(VERSION)' '$(SOURCE_DATE_EPOCH)'))$(PKG_VERSION)
LDFLAGS      = -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)
STAMP        = VERSION='$(VERSION)' COMMIT='$(COMMIT)' SOURCE_DATE_EPOCH='$(SOURCE_DATE_EPOCH)' DATE='$(DATE)' PKG_VERSION='$(PKG_VERSION)'

dist:
	rm -rf $(DIST)
	@set -e; for arch in $(DIST_ARCHES); do \
	  $(MAKE) --no-print-directory dist-binary dist-tarball dist-packages ARCH=$$arch $(STAMP); \
	done
	cd $(DIST) && sha256sum *.tar.gz *.deb *.rpm > SHA256SUMS
	@ls -l $(DIST)

## dist-check: the amd64 binary and .deb of dist only, then deploy/'s tests against them
## (package contents, owners, modes, conffile, maintainer scripts, version stamp, units)
dist-check:
	rm -rf $(DIST)
	$(MAKE) --no-print-directory dist-binary dist-packages ARCH=amd64 PACKAGERS=deb $(STAMP)
	TOLLGATE_DIST_BIN=$(CURDIR)/$(DIST)/linux-amd64/tollgate TOLLGATE_DIST_DEB="$$(ls $(CURDIR)/$(DIST)/tollgate_*_amd64.deb)" \
	  TOLLGATE_DIST_VERSION='$(VERSION)' TOLLGATE_DIST_COMMIT='$(COMMIT)' TOLLGATE_DIST_DATE='$(DATE)' TOLLGATE_REQUIRE_INTEGRATION=1 \
	  $(GO) test -count=1 ./deploy/...

# The steps of dist for one ARCH, run by dist and dist-check.
ARCH      ?= amd64
PACKAGERS ?= deb rpm
DIST_NAME  = tollgate_$(PKG_VERSION)_linux_$(ARCH)
.PHONY: dist-binary dist-tarball dist-packages
dist-binary:
	CGO_ENABLED=0 GOOS=linux GOARCH=$(ARCH) $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(DIST)/linux-$(ARCH)/tollgate ./cmd/tollgate

dist-tarball:
	rm -rf $(DIST)/$(DIST_NAME) && mkdir -p $(DIST)/$(DIST_NAME)/systemd
	install -m 0755 $(DIST)/linux-$(ARCH)/tollgate $(DIST)/$(DIST_NAME)/tollgate
	install -m 0644 deploy/systemd/tollgate.service deploy/systemd/envoy@.service $(DIST)/$(DIST_NAME)/systemd/
	install -m 0644 deploy/config.yaml deploy/envoy.env.example deploy/README.md $(DIST)/$(DIST_NAME)/
	@if [ -f LICENSE ]; then install -m 0644 LICENSE $(DIST)/$(DIST_NAME)/; fi
	tar -C $(DIST) --sort=name --owner=0 --group=0 --numeric-owner --mtime=@$(SOURCE_DATE_EPOCH) \
	  -cf - $(DIST_NAME) | gzip -9n > $(DIST)/$(DIST_NAME).tar.gz
	rm -rf $(DIST)/$(DIST_NAME)

dist-packages:
	@set -e; for p in $(PACKAGERS); do \
	  echo "nfpm: $$p $(PKG_VERSION) $(ARCH)"; \
	  SOURCE_DATE_EPOCH='$(SOURCE_DATE_EPOCH)' TOLLGATE_ARCH=$(ARCH) TOLLGATE_PKG_VERSION='$(PKG_VERSION)' \
	    TOLLGATE_BIN=$(DIST)/linux-$(ARCH)/tollgate TOLLGATE_MAINTAINER='$(MAINTAINER)' \
	    $(GO) run $(NFPM) package --config deploy/nfpm.yaml --packager $$p --target $(DIST)/; \
	done

build:
	$(GO) build -o bin/tollgate ./cmd/tollgate

clean:
	rm -rf bin
