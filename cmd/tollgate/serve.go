package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/cobra"
	"github.com/spf13/viper"
	"golang.org/x/sync/errgroup"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/policies"
	"github.com/tollgate-dev/tollgate/store"
	"github.com/tollgate-dev/tollgate/xds"
)

// serveConfig is everything `tollgate serve` reads from flags, TOLLGATE_*
// environment variables and the optional config file, in that precedence.
type serveConfig struct {
	Policies       string
	XDSAddr        string
	AdminAddr      string
	SystemCABundle string
	Debounce       time.Duration
	LogLevel       string
	LogFormat      string

	// XDSTLSCert, XDSTLSKey and XDSClientCA switch xDS to mutual TLS.
	XDSTLSCert  string
	XDSTLSKey   string
	XDSClientCA string
	// SPIFFESocket switches xDS to mutual TLS with tollgate's SVID from
	// the SPIFFE Workload API at this socket; SPIFFEID picks tollgate's
	// SVID when the Workload API returns several.
	SPIFFESocket string
	SPIFFEID     string
	// XDSIdentities binds client certificate identities to gateways; only
	// from the config file (or TOLLGATE_XDS_IDENTITIES as JSON).
	XDSIdentities []xds.IdentityBinding
	// AllowPlaintextSecrets lets plaintext xDS serve secrets.
	AllowPlaintextSecrets bool

	// StateDir holds the bbolt API store (tollgate.db); Store, an
	// etcd:// URL, shares the API store between replicas instead. With
	// neither, the API serves reads only.
	StateDir string
	Store    string
	// StoreCACert, StoreCert and StoreKey are the TLS files of an
	// etcds:// store.
	StoreCACert string
	StoreCert   string
	StoreKey    string
	// APITokens is the file of hashed bearer tokens allowed to write
	// through the API; APIIdentities grant client certificate identities
	// (config file only, or TOLLGATE_API_IDENTITIES as JSON).
	APITokens     string
	APIIdentities []store.IdentityGrant
	// APISecretsDir is where API objects may name files: each namespace
	// under its own folder; without it they may name none.
	APISecretsDir string
	// AdminTLSCert and AdminTLSKey serve the admin API over HTTPS;
	// AdminClientCA verifies client certificates (for api-identities).
	AdminTLSCert  string
	AdminTLSKey   string
	AdminClientCA string
	// AdminSPIFFE serves the admin API over HTTPS with tollgate's SVID
	// (from SPIFFESocket), verifying client SVIDs when sent.
	AdminSPIFFE bool
}

func newServeCmd() *cobra.Command { return newServeCmdWith(viper.New()) }

// newServeCmdWith binds serve's flags, TOLLGATE_* variables and config file
// keys to v.
func newServeCmdWith(v *viper.Viper) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve --policies DIR",
		Short: "Serve the policies in DIR to Envoys over ADS, following every change",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadServeConfig(v)
			if err != nil {
				return err
			}
			return serve(cmd.Context(), cfg, cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.String("config", "", "optional config file (YAML) with the same keys as the flags")
	f.String("policies", "", "directory of policy YAML files (read recursively)")
	f.String("xds-addr", "127.0.0.1:18000", "address of the xDS (ADS) gRPC server")
	f.String("admin-addr", "127.0.0.1:19000", "address of the admin HTTP server (status, metrics, health)")
	f.String("system-ca-bundle", model.DefaultSystemCABundle, "path, on the Envoy hosts, of the system trust bundle used to verify providers")
	f.Duration("debounce", store.DefaultDebounce, "quiet period before a change not known to be complete (a file still open for writing, a new directory) is reloaded; a complete save (closed, or renamed into place) is served at once")
	f.String("log-level", "info", "debug, info, warn or error")
	f.String("log-format", "text", "text or json")
	f.String("xds-tls-cert", "", "xDS server certificate (PEM); with --xds-tls-key and --xds-client-ca, xDS requires mutual TLS")
	f.String("xds-tls-key", "", "private key of --xds-tls-cert (PEM)")
	f.String("xds-client-ca", "", "CA bundle (PEM) that Envoy client certificates must chain to")
	f.String("spiffe-socket", "", "SPIFFE Workload API socket (e.g. the SPIRE agent's): xDS uses mutual TLS with tollgate's SVID and verifies Envoy SVIDs against its trust bundles; instead of --xds-tls-cert, --xds-tls-key and --xds-client-ca")
	f.String("spiffe-id", "", "with --spiffe-socket: tollgate's SPIFFE ID, to pick its SVID when the Workload API returns several (default: the first)")
	f.Bool("allow-plaintext-secrets", false, "serve secrets over plaintext (loopback-only) xDS, where any local process can fetch them")
	f.String("state-dir", "", "directory of the API store (bbolt file tollgate.db): objects written through the HTTP API persist there; without it (or --store) the API is read-only")
	f.String("store", "", "etcd://HOST:2379[,HOST:2379]/PREFIX: keep the API store in etcd, shared by several tollgate replicas (instead of --state-dir)")
	f.String("store-cacert", "", "with --store etcds://...: CA bundle (PEM) that verifies etcd's certificate (default: the system's)")
	f.String("store-cert", "", "with --store etcds://...: client certificate (PEM) for etcd")
	f.String("store-key", "", "private key (PEM) of --store-cert")
	f.String("api-tokens", "", "YAML file of hashed bearer tokens that may write through the API, each with its namespaces (tollgate token new makes entries)")
	f.String("api-secrets-dir", "", "directory whose NAMESPACE/ folders hold the files (keys, certificates) that objects written through the API may name; without it they may name no file and no environment variable")
	f.String("admin-tls-cert", "", "serve the admin API over HTTPS with this certificate (PEM)")
	f.String("admin-tls-key", "", "private key of --admin-tls-cert (PEM)")
	f.Bool("admin-spiffe", false, "with --spiffe-socket: serve the admin API over HTTPS with tollgate's SVID, and verify client SVIDs (for api-identities) against the Workload API's trust bundles")
	f.String("admin-client-ca", "", "CA bundle (PEM) that admin API client certificates must chain to (for api-identities)")
	v.SetEnvPrefix("TOLLGATE")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	_ = v.BindPFlags(f)
	return cmd
}

func loadServeConfig(v *viper.Viper) (serveConfig, error) {
	if file := v.GetString("config"); file != "" {
		v.SetConfigFile(file)
		if err := v.ReadInConfig(); err != nil {
			return serveConfig{}, fmt.Errorf("read config file: %w", err)
		}
	}
	cfg := serveConfig{
		Policies:       v.GetString("policies"),
		XDSAddr:        v.GetString("xds-addr"),
		AdminAddr:      v.GetString("admin-addr"),
		SystemCABundle: v.GetString("system-ca-bundle"),
		Debounce:       v.GetDuration("debounce"),
		LogLevel:       v.GetString("log-level"),
		LogFormat:      v.GetString("log-format"),

		XDSTLSCert:            v.GetString("xds-tls-cert"),
		XDSTLSKey:             v.GetString("xds-tls-key"),
		XDSClientCA:           v.GetString("xds-client-ca"),
		SPIFFESocket:          v.GetString("spiffe-socket"),
		SPIFFEID:              v.GetString("spiffe-id"),
		AllowPlaintextSecrets: v.GetBool("allow-plaintext-secrets"),

		StateDir:      v.GetString("state-dir"),
		Store:         v.GetString("store"),
		StoreCACert:   v.GetString("store-cacert"),
		StoreCert:     v.GetString("store-cert"),
		StoreKey:      v.GetString("store-key"),
		APITokens:     v.GetString("api-tokens"),
		APISecretsDir: v.GetString("api-secrets-dir"),
		AdminTLSCert:  v.GetString("admin-tls-cert"),
		AdminTLSKey:   v.GetString("admin-tls-key"),
		AdminClientCA: v.GetString("admin-client-ca"),
		AdminSPIFFE:   v.GetBool("admin-spiffe"),
	}
	if cfg.Policies == "" {
		return cfg, errors.New("--policies is required (or TOLLGATE_POLICIES, or policies: in --config): the directory of policy YAML files")
	}
	ids, err := loadIdentities(v)
	if err != nil {
		return cfg, err
	}
	cfg.XDSIdentities = ids
	if cfg.APIIdentities, err = loadAPIIdentities(v); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// loadAPIIdentities reads api-identities, a list of {identity,
// namespaces}: from the config file, or TOLLGATE_API_IDENTITIES as JSON.
func loadAPIIdentities(v *viper.Viper) ([]store.IdentityGrant, error) {
	return loadList[store.IdentityGrant](v, "api-identities",
		`[{"identity": "spiffe://corp.example/ci", "namespaces": ["team-a"]}]`, "{identity: ..., namespaces: [...]}")
}

// loadIdentities reads xds-identities, a list of {identity, gateways}:
// from the config file, or from TOLLGATE_XDS_IDENTITIES as JSON.
func loadIdentities(v *viper.Viper) ([]xds.IdentityBinding, error) {
	return loadList[xds.IdentityBinding](v, "xds-identities",
		`[{"identity": "spiffe://corp.example/gateway/egress", "gateways": ["egress"]}]`, "{identity: ..., gateways: [...]}")
}

// loadList reads a list setting that flags cannot carry: from the config
// file, or from its TOLLGATE_ variable as JSON (jsonExample shows the
// shape). Unknown keys are errors, as a misspelt key would otherwise grant
// nothing silently.
func loadList[T any](v *viper.Viper, key, jsonExample, yamlShape string) ([]T, error) {
	var out []T
	switch raw := v.Get(key).(type) {
	case nil:
		return nil, nil
	case string:
		dec := json.NewDecoder(strings.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&out); err != nil {
			env := "TOLLGATE_" + strings.ToUpper(strings.ReplaceAll(key, "-", "_"))
			return nil, fmt.Errorf("%s: want a JSON list like %s: %w", env, jsonExample, err)
		}
	default:
		err := v.UnmarshalKey(key, &out, func(c *mapstructure.DecoderConfig) { c.ErrorUnused = true })
		if err != nil {
			return nil, fmt.Errorf("%s in the config file: want a list of %s: %w", key, yamlShape, err)
		}
	}
	return out, nil
}

// spiffeTimeout bounds the wait for tollgate's first SVID at start.
const spiffeTimeout = 30 * time.Second

// xdsOptions checks the xDS security settings and turns them into the xDS
// server's options: mutual TLS with identity bindings (from files, or from
// the SPIFFE Workload API, whose identity is returned to be followed), or
// plaintext on a loopback address only.
func (cfg serveConfig) xdsOptions(ctx context.Context, log *slog.Logger) (xds.Options, *xds.SPIFFETLS, error) {
	opts := xds.Options{Log: log, AllowPlaintextSecrets: cfg.AllowPlaintextSecrets}
	set := 0
	for _, f := range []string{cfg.XDSTLSCert, cfg.XDSTLSKey, cfg.XDSClientCA} {
		if f != "" {
			set++
		}
	}
	if cfg.SPIFFESocket != "" || cfg.SPIFFEID != "" {
		o, id, err := cfg.spiffeOptions(ctx, log, set)
		return o, id, err
	}
	o, err := cfg.fileOptions(log, opts, set)
	return o, nil, err
}

// spiffeOptions is mutual TLS with tollgate's SVID from the Workload API.
func (cfg serveConfig) spiffeOptions(ctx context.Context, log *slog.Logger, filesSet int) (xds.Options, *xds.SPIFFETLS, error) {
	opts := xds.Options{Log: log}
	switch {
	case cfg.SPIFFESocket == "":
		return opts, nil, errors.New("--spiffe-id needs --spiffe-socket: the Workload API socket tollgate's SVID comes from")
	case filesSet > 0:
		return opts, nil, errors.New("--spiffe-socket and --xds-tls-cert/--xds-tls-key/--xds-client-ca are mutually exclusive: with --spiffe-socket tollgate's certificate and the Envoys' trust bundle come from the Workload API; drop the files")
	case len(cfg.XDSIdentities) == 0:
		return opts, nil, errors.New("--spiffe-socket requires client SVIDs but xds-identities is empty, so every Envoy would be refused: " +
			"in the config file, bind each Envoy SPIFFE ID (or pattern) to its gateways, e.g. xds-identities: [{identity: spiffe://corp.example/gateway/egress/*, gateways: [egress]}]")
	}
	authz, err := xds.NewAuthorizer(cfg.XDSIdentities)
	if err != nil {
		return opts, nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, spiffeTimeout)
	defer cancel()
	id, err := xds.NewSPIFFETLS(wctx, xds.SPIFFEOptions{Socket: cfg.SPIFFESocket, ID: cfg.SPIFFEID, TrustDomains: authz.TrustDomains(), Log: log})
	if err != nil {
		return opts, nil, err
	}
	if cfg.AllowPlaintextSecrets {
		log.Info("--allow-plaintext-secrets has no effect: xDS uses mutual TLS")
	}
	opts.TLS, opts.Authorizer = id.Config(), authz
	return opts, id, nil
}

// fileOptions is mutual TLS from files, or plaintext.
func (cfg serveConfig) fileOptions(log *slog.Logger, opts xds.Options, set int) (xds.Options, error) {
	switch {
	case set == 0:
		if len(cfg.XDSIdentities) > 0 {
			return opts, errors.New("xds-identities is set but xDS is plaintext: identities come from client certificates, so also set --xds-tls-cert, --xds-tls-key and --xds-client-ca, or --spiffe-socket")
		}
		if err := xds.CheckPlaintextAddr(cfg.XDSAddr); err != nil {
			return opts, err
		}
		if cfg.AllowPlaintextSecrets {
			log.Warn("SECRETS OVER PLAINTEXT: --allow-plaintext-secrets is set, so any process on this host that can connect to the xDS port can fetch every gateway's API keys and private keys; serve xDS over mutual TLS (--xds-tls-cert, --xds-tls-key, --xds-client-ca) instead",
				"xds", cfg.XDSAddr)
		}
		return opts, nil
	case set < 3:
		return opts, errors.New("--xds-tls-cert, --xds-tls-key and --xds-client-ca go together: tollgate's xDS TLS always verifies Envoy client certificates")
	}
	if len(cfg.XDSIdentities) == 0 {
		return opts, errors.New("xDS requires client certificates but xds-identities is empty, so every Envoy would be refused: " +
			"in the config file, bind each Envoy identity to its gateways, e.g. xds-identities: [{identity: spiffe://corp.example/gateway/egress, gateways: [egress]}]")
	}
	authz, err := xds.NewAuthorizer(cfg.XDSIdentities)
	if err != nil {
		return opts, err
	}
	tlsCfg, err := xds.NewServerTLS(xds.TLSFiles{Cert: cfg.XDSTLSCert, Key: cfg.XDSTLSKey, ClientCA: cfg.XDSClientCA}, log)
	if err != nil {
		return opts, err
	}
	if cfg.AllowPlaintextSecrets {
		log.Info("--allow-plaintext-secrets has no effect: xDS uses mutual TLS")
	}
	opts.TLS, opts.Authorizer = tlsCfg, authz
	return opts, nil
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", format)
}

// instance is a running control plane.
type instance struct {
	XDSAddr   net.Addr
	AdminAddr net.Addr
	Store     *store.Store
	XDS       *xds.Server
	wait      func() error
	stop      func() // set by tests
}

// start loads the policies, refusing to start on any violation, then serves
// xDS and admin and follows the policy directory until ctx ends.
func start(ctx context.Context, cfg serveConfig, logOut io.Writer) (_ *instance, err error) {
	log, err := newLogger(logOut, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return nil, err
	}
	xdsOpts, spiffeID, err := cfg.xdsOptions(ctx, log)
	if err != nil {
		return nil, err
	}
	var extra []func() []model.Condition
	if spiffeID != nil {
		defer func() {
			if err != nil {
				spiffeID.Close()
			}
		}()
		extra = append(extra, spiffeID.Conditions)
	}
	metrics := xds.NewMetrics()
	xdsOpts.Metrics = metrics
	xdsServer := xds.NewServer(ctx, xdsOpts)
	dns := store.NewDNSVerifier(store.DNSVerifierOptions{Log: log})
	st, err := store.New(store.Options{
		Settings: model.Settings{SystemCABundle: cfg.SystemCABundle},
		Accept:   xdsServer.Apply,
		Check:    xdsServer.Check,
		DNS:      dns,
		Metrics:  metrics,
		Log:      log,
	})
	if err != nil {
		return nil, err
	}
	auth, err := cfg.authenticator()
	if err != nil {
		return nil, err
	}
	if cfg.APITokens != "" {
		auth.FollowTokenFile(cfg.APITokens, log)
	}
	adminTLS, err := cfg.adminTLS(spiffeID)
	if err != nil {
		return nil, err
	}
	scheme := policies.NewScheme()
	backend, backendName, err := cfg.openBackend()
	if err != nil {
		return nil, err
	}
	var api *store.APISource
	if backend != nil {
		defer func() {
			if err != nil {
				backend.Close()
			}
		}()
		api = store.NewAPISource(backend, st, scheme, log)
		if cfg.APISecretsDir != "" {
			api.SetSecretsDir(cfg.APISecretsDir)
		}
		if err := api.Load(ctx); err != nil {
			return nil, err
		}
	}
	src := store.NewFileSource(cfg.Policies, scheme, log)
	src.SetDebounce(cfg.Debounce)
	if api != nil {
		src.AllowEmpty()
	}
	if err := src.Start(st); err != nil {
		if errors.Is(err, xds.ErrPlaintextSecrets) {
			return nil, fmt.Errorf("policies in %s: %w", cfg.Policies, err)
		}
		return nil, fmt.Errorf("policies in %s are not valid; fix them and start again:\n%w", cfg.Policies, err)
	}
	xdsLis, err := net.Listen("tcp", cfg.XDSAddr)
	if err != nil {
		return nil, fmt.Errorf("xDS listener: %w", err)
	}
	if xdsOpts.TLS == nil {
		// A host name such as localhost is checked again as bound.
		if err := xds.CheckPlaintextAddr(xdsLis.Addr().String()); err != nil {
			xdsLis.Close()
			return nil, err
		}
	}
	adminLis, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		xdsLis.Close()
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	apiHandler := store.NewAPIHandler(store.APIHandlerOptions{Store: st, API: api, Scheme: scheme, Auth: auth, Log: log,
		Conditions: func() []model.Condition { return otherConditions(xdsServer, extra) }})
	admin := &http.Server{Handler: adminMux(st, xdsServer, src.Name(), apiHandler, metrics.Handler(), extra...), ReadHeaderTimeout: 10 * time.Second, TLSConfig: adminTLS,
		// Failed handshakes (scanners, clients of another CA) are not
		// tollgate's errors: debug lines, not stray stderr.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return xdsServer.Serve(gctx, xdsLis) })
	g.Go(func() error {
		serveAdmin := func() error { return admin.Serve(adminLis) }
		if adminTLS != nil {
			serveAdmin = func() error { return admin.ServeTLS(adminLis, "", "") }
		}
		if err := serveAdmin(); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	if api != nil {
		g.Go(func() error {
			err := api.Run(gctx)
			if cerr := backend.Close(); err == nil {
				err = cerr
			}
			return err
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return admin.Shutdown(shutdownCtx)
	})
	g.Go(func() error { return src.Watch(gctx, st, nil) })
	// SIGHUP is caught from before "tollgate serving" until the end.
	hup, stopHUP := notifyHUP()
	g.Go(func() error {
		defer stopHUP()
		reloadOn(gctx, hup, func() error { return src.Sync(st) }, log)
		return nil
	})
	g.Go(func() error { return dns.Run(gctx, st) })
	if spiffeID != nil {
		g.Go(func() error {
			spiffeID.Run(gctx)
			return spiffeID.Close()
		})
	}
	log.Info("tollgate serving", "version", versionString(), "policies", cfg.Policies,
		"xds", xdsLis.Addr().String(), "xds_mtls", xdsOpts.TLS != nil, "admin", adminLis.Addr().String(), "admin_tls", adminTLS != nil,
		"api_store", backendName, "api_writers", auth.Enabled(), "gateways", len(st.Config().Gateways))
	return &instance{
		XDSAddr:   xdsLis.Addr(),
		AdminAddr: adminLis.Addr(),
		Store:     st,
		XDS:       xdsServer,
		wait: func() error {
			err := g.Wait()
			log.Info("tollgate stopped")
			return err
		},
	}, nil
}

func serve(ctx context.Context, cfg serveConfig, logOut io.Writer) error {
	inst, err := start(ctx, cfg, logOut)
	if err != nil {
		return err
	}
	return inst.wait()
}

// otherConditions are the conditions of the parts other than the store:
// the xDS server's (Programmed per object, NACKs, Envoy versions) and
// extra's (tollgate's SVID).
func otherConditions(x *xds.Server, extra []func() []model.Condition) []model.Condition {
	out := append(x.Conditions(), x.ProgrammedConditions()...)
	for _, f := range extra {
		out = append(out, f()...)
	}
	return out
}

// adminMux serves status and metrics; extra adds conditions of other parts
// (tollgate's own SVID).
func adminMux(st *store.Store, x *xds.Server, fileSource string, api *store.APIHandler, metrics http.Handler, extra ...func() []model.Condition) *http.ServeMux {
	mux := http.NewServeMux()
	api.Register(mux)
	mux.Handle("GET /explain/routes/{ns}/{name}", explainHandler(st))
	mux.Handle("POST /diff", api.RequireOperator(diffHandler(st, fileSource)))
	mux.Handle("GET /metrics", metrics)
	mux.Handle("/status/", x.AdminHandler())
	mux.HandleFunc("GET /status/policies", func(w http.ResponseWriter, _ *http.Request) {
		// The policies' conditions and those of the connected Envoys (a
		// gateway with nodes too old for its configuration).
		ps := st.Status()
		ps.Conditions = append(slices.Clone(ps.Conditions), x.Conditions()...)
		for _, f := range extra {
			ps.Conditions = append(ps.Conditions, f()...)
		}
		model.SortConditions(ps.Conditions)
		xds.WriteJSON(w, ps)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	return mux
}
