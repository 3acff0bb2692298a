package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

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
	f.String("admin-addr", "127.0.0.1:19000", "address of the admin HTTP server (status, health)")
	f.String("system-ca-bundle", model.DefaultSystemCABundle, "path, on the Envoy hosts, of the system trust bundle used to verify providers")
	f.Duration("debounce", store.DefaultDebounce, "quiet period before a changed policy directory is reloaded")
	f.String("log-level", "info", "debug, info, warn or error")
	f.String("log-format", "text", "text or json")
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
	}
	if cfg.Policies == "" {
		return cfg, errors.New("--policies is required (or TOLLGATE_POLICIES, or policies: in --config): the directory of policy YAML files")
	}
	return cfg, nil
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
func start(ctx context.Context, cfg serveConfig, logOut io.Writer) (*instance, error) {
	log, err := newLogger(logOut, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return nil, err
	}
	xdsServer := xds.NewServer(ctx, xds.Options{Log: log})
	st, err := store.New(store.Options{
		Settings: model.Settings{SystemCABundle: cfg.SystemCABundle},
		Accept:   xdsServer.Apply,
	})
	if err != nil {
		return nil, err
	}
	src := store.NewFileSource(cfg.Policies, policies.NewScheme(), log)
	src.SetDebounce(cfg.Debounce)
	if err := src.Sync(st); err != nil {
		return nil, fmt.Errorf("policies in %s are not valid; fix them and start again:\n%w", cfg.Policies, err)
	}
	xdsLis, err := net.Listen("tcp", cfg.XDSAddr)
	if err != nil {
		return nil, fmt.Errorf("xDS listener: %w", err)
	}
	adminLis, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		xdsLis.Close()
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	admin := &http.Server{Handler: adminMux(st, xdsServer), ReadHeaderTimeout: 10 * time.Second}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return xdsServer.Serve(gctx, xdsLis) })
	g.Go(func() error {
		if err := admin.Serve(adminLis); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return admin.Shutdown(shutdownCtx)
	})
	g.Go(func() error { return src.Watch(gctx, st, nil) })
	log.Info("tollgate serving", "version", versionString(), "policies", cfg.Policies,
		"xds", xdsLis.Addr().String(), "admin", adminLis.Addr().String(), "gateways", len(st.Config().Gateways))
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

func adminMux(st *store.Store, x *xds.Server) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/status/", x.AdminHandler())
	mux.HandleFunc("GET /status/policies", func(w http.ResponseWriter, _ *http.Request) {
		xds.WriteJSON(w, st.Status())
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	return mux
}
