// This go.mod only marks the module root, which keeps the checker out of
// tollgate's module. Builds use one modfile per Envoy release instead:
// go build -modfile=v1.40.mod -tags envoy1_40 (see main.go).
module github.com/tollgate-dev/tollgate/translate/envoycompat

go 1.26.0
