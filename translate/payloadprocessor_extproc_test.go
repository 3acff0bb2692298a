package translate_test

// The PayloadProcessor's wiring, exercised over the real ext_proc gRPC API
// (envoy.service.ext_proc.v3.ExternalProcessor) on loopback: a processor
// server in Go, and a client that plays the ext_proc filter's part the way
// Envoy does for the processing mode, timeout, failure mode, forwarding and
// mutation rules of the ExternalProcessor tollgate generated. No Envoy
// runs here; the client follows, and cites, the filter's code:
//
//   - Filter::onHeaders / Filter::onData (BUFFERED: one request_body
//     message with the whole body and end_of_stream), Filter::onReceiveMessage
//     (spurious answers and disable_immediate_response end the processing and
//     let the request go on; a refused mutation is a 500),
//     Filter::onGrpcError (500 unless failure_mode_allow) and
//     Filter::onMessageTimeout (504 unless failure_mode_allow), all in
//     source/extensions/filters/http/ext_proc/ext_proc.cc;
//   - ProcessorState::handleHeadersResponse / handleBodyResponse
//     (processor_state.cc: the header mutation first, then the body,
//     refused when it disagrees with content-length);
//   - MutationUtils::applyHeaderMutations (mutation_utils.cc) and
//     Checker::check / Checker::isAllowed in
//     source/extensions/filters/common/mutation_rules/mutation_rules.cc for
//     which mutations apply (checkMutation below).

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tollgate-dev/tollgate/model"
	"github.com/tollgate-dev/tollgate/translate"
)

// processorConfig translates a config and returns the ExternalProcessor
// of the listener filter named name.
func processorConfig(t *testing.T, cfg *model.Config, name string) *extprocv3.ExternalProcessor {
	t.Helper()
	out, err := translate.Translate(cfg)
	require.NoError(t, err)
	for _, g := range out.Gateways {
		for _, l := range g.Listeners {
			for _, fc := range l.GetFilterChains() {
				for _, f := range fc.GetFilters() {
					hcm := &hcmv3.HttpConnectionManager{}
					if f.GetTypedConfig().UnmarshalTo(hcm) != nil {
						continue
					}
					for _, hf := range hcm.GetHttpFilters() {
						if hf.GetName() != name {
							continue
						}
						require.True(t, hf.GetDisabled(), "%s must be disabled on the listener", name)
						ep := &extprocv3.ExternalProcessor{}
						require.NoError(t, hf.GetTypedConfig().UnmarshalTo(ep))
						return ep
					}
				}
			}
		}
	}
	t.Fatalf("no HTTP filter %s", name)
	return nil
}

// loadInline loads a config written in the test.
func loadInline(t *testing.T, doc string) *model.Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "case.yaml")
	require.NoError(t, os.WriteFile(path, []byte(doc), 0o600))
	cfg, errs := loadCase(t, path)
	require.Empty(t, errs)
	return cfg
}

// processorServer is an ext_proc server whose answers the test chooses.
type processorServer struct {
	extprocsvc.UnimplementedExternalProcessorServer
	answer func(*extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse
	delay  time.Duration

	mu   sync.Mutex
	seen []*extprocsvc.ProcessingRequest
}

func (s *processorServer) Process(stream grpc.BidiStreamingServer[extprocsvc.ProcessingRequest, extprocsvc.ProcessingResponse]) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		s.mu.Lock()
		s.seen = append(s.seen, req)
		s.mu.Unlock()
		if s.delay > 0 {
			select {
			case <-time.After(s.delay):
			case <-stream.Context().Done():
				return nil
			}
		}
		if err := stream.Send(s.answer(req)); err != nil {
			return nil
		}
	}
}

func startProcessor(t *testing.T, s *processorServer) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	extprocsvc.RegisterExternalProcessorServer(srv, s)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// httpRequest is a request as the filter holds it: lowercase header names.
type httpRequest struct {
	headers map[string]string
	body    string
}

// outcome is what the filter did with a request: forwarded it (status 0)
// with these headers and body, or answered it with status.
type outcome struct {
	status  int
	details string
	req     httpRequest
}

var errTimeout = errors.New("message timeout")

// envoyExtProc processes one request with the ExternalProcessor ep against
// the server at addr, as Envoy's ext_proc filter would on the request path.
func envoyExtProc(t *testing.T, ep *extprocv3.ExternalProcessor, addr string, in httpRequest) outcome {
	t.Helper()
	req := httpRequest{headers: map[string]string{}, body: in.body}
	for k, v := range in.headers {
		req.headers[k] = v
	}
	forwarded := outcome{req: req}
	// Filter::onGrpcError: a stream that cannot be opened or fails.
	grpcError := func(err error) outcome {
		if ep.GetFailureModeAllow() {
			return forwarded
		}
		return outcome{status: 500, details: "ext_proc_error_gRPC_error: " + err.Error()}
	}
	// Filter::onMessageTimeout.
	timeout := func() outcome {
		if ep.GetFailureModeAllow() {
			return forwarded
		}
		return outcome{status: 504, details: "ext_proc_error_per-message_timeout_exceeded"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	stream, err := extprocsvc.NewExternalProcessorClient(conn).Process(ctx, grpc.WaitForReady(false))
	if err != nil {
		return grpcError(err)
	}
	defer func() { _ = stream.CloseSend() }()
	msgTimeout := ep.GetMessageTimeout().AsDuration()
	type recv struct {
		resp *extprocsvc.ProcessingResponse
		err  error
	}
	// call sends one message and waits for its answer, no longer than the
	// message timeout (ProcessorState::onStartProcessorCall arms it).
	call := func(m *extprocsvc.ProcessingRequest) (*extprocsvc.ProcessingResponse, error) {
		if err := stream.Send(m); err != nil {
			return nil, err
		}
		ch := make(chan recv, 1)
		go func() {
			r, err := stream.Recv()
			ch <- recv{r, err}
		}()
		select {
		case r := <-ch:
			return r.resp, r.err
		case <-time.After(msgTimeout):
			return nil, errTimeout
		}
	}
	fail := func(err error) outcome {
		if errors.Is(err, errTimeout) {
			return timeout()
		}
		return grpcError(err)
	}
	mode := ep.GetProcessingMode()
	hasBody := req.body != ""
	// handle applies an answer; done reports that processing ended (an
	// immediate response, a refusal, or a spurious answer after which
	// Envoy ignores the processor and lets the request go on).
	handle := func(resp *extprocsvc.ProcessingResponse, want string) (o outcome, done bool) {
		if ir := resp.GetImmediateResponse(); ir != nil {
			if ep.GetDisableImmediateResponse() {
				return outcome{req: req}, true // spurious: continue unprocessed
			}
			status := int(ir.GetStatus().GetCode())
			if status < 200 {
				status = 200 // MutationUtils::isValidHttpStatus, DefaultImmediateStatus
			}
			return outcome{status: status, details: ir.GetDetails()}, true
		}
		var common *extprocsvc.CommonResponse
		switch want {
		case "request_headers":
			if resp.GetRequestHeaders() == nil {
				return outcome{req: req}, true
			}
			common = resp.GetRequestHeaders().GetResponse()
		case "request_body":
			if resp.GetRequestBody() == nil {
				return outcome{req: req}, true
			}
			common = resp.GetRequestBody().GetResponse()
		}
		if hm := common.GetHeaderMutation(); hm != nil {
			if err := applyHeaderMutation(ep, hm, req.headers); err != nil {
				return outcome{status: 500, details: err.Error()}, true
			}
		}
		if bm := common.GetBodyMutation(); bm != nil {
			newBody := req.body
			switch {
			case bm.GetClearBody():
				newBody = ""
			case bm.GetBody() != nil:
				newBody = string(bm.GetBody())
			}
			if cl, ok := req.headers["content-length"]; ok && want == "request_body" {
				if n, err := strconv.Atoi(cl); err == nil && n != len(newBody) {
					return outcome{status: 500, details: "mismatch between content length and the length of the mutated body"}, true
				}
			}
			req.body = newBody
		}
		return outcome{}, false
	}
	if mode.GetRequestHeaderMode() != extprocv3.ProcessingMode_SKIP {
		resp, err := call(&extprocsvc.ProcessingRequest{Request: &extprocsvc.ProcessingRequest_RequestHeaders{
			RequestHeaders: &extprocsvc.HttpHeaders{Headers: headerMap(ep, req.headers), EndOfStream: !hasBody},
		}})
		if err != nil {
			return fail(err)
		}
		if o, done := handle(resp, "request_headers"); done {
			return o
		}
	}
	if hasBody && mode.GetRequestBodyMode() == extprocv3.ProcessingMode_BUFFERED {
		resp, err := call(&extprocsvc.ProcessingRequest{Request: &extprocsvc.ProcessingRequest_RequestBody{
			RequestBody: &extprocsvc.HttpBody{Body: []byte(req.body), EndOfStream: true},
		}})
		if err != nil {
			return fail(err)
		}
		if o, done := handle(resp, "request_body"); done {
			return o
		}
	}
	return outcome{req: req}
}

// headerMap is what the processor sees: every header but those forward
// rules withhold (MutationUtils::headersToProto, headerCanBeForwarded),
// values in raw_value as Envoy sends them.
func headerMap(ep *extprocv3.ExternalProcessor, h map[string]string) *corev3.HeaderMap {
	withheld := map[string]bool{}
	for _, m := range ep.GetForwardRules().GetDisallowedHeaders().GetPatterns() {
		withheld[m.GetExact()] = true
	}
	out := &corev3.HeaderMap{}
	for k, v := range h {
		if !withheld[k] {
			out.Headers = append(out.Headers, &corev3.HeaderValue{Key: k, RawValue: []byte(v)})
		}
	}
	return out
}

type checkResult int

const (
	checkOK checkResult = iota
	checkIgnore
	checkFail
)

// checkMutation is Checker::check and Checker::isAllowed
// (source/extensions/filters/common/mutation_rules/mutation_rules.cc) for
// the generated rules, with Envoy's default header_prefix (x-envoy).
// Expressions match the whole lowercase name (RE2 full match).
func checkMutation(ep *extprocv3.ExternalProcessor, remove bool, name string) checkResult {
	r := ep.GetMutationRules()
	full := func(re string) bool { return regexp.MustCompile(`^(?:` + re + `)$`).MatchString(name) }
	allowed := func() bool {
		if remove && (strings.HasPrefix(name, ":") || name == "host") {
			return false // HeaderUtility::isModifiableHeader
		}
		if r.GetDisallowExpression() != nil && full(r.GetDisallowExpression().GetRegex()) {
			return false
		}
		if r.GetAllowExpression() != nil && full(r.GetAllowExpression().GetRegex()) {
			return true
		}
		if r.GetDisallowAll().GetValue() {
			return false
		}
		if !r.GetAllowAllRouting().GetValue() && (name == "host" || name == ":authority" || name == ":method" || name == ":scheme") {
			return false
		}
		if strings.HasPrefix(name, ":") && r.GetDisallowSystem().GetValue() {
			return false
		}
		if !r.GetAllowEnvoy().GetValue() && strings.HasPrefix(name, "x-envoy") {
			return false
		}
		return true
	}
	switch {
	case allowed():
		return checkOK
	case r.GetDisallowIsError().GetValue():
		return checkFail
	}
	return checkIgnore
}

// applyHeaderMutation is MutationUtils::applyHeaderMutations: removals,
// then sets; a FAIL ends it with an error (the filter answers 500), an
// IGNORE skips that one mutation (rejected_header_mutations).
func applyHeaderMutation(ep *extprocv3.ExternalProcessor, hm *extprocsvc.HeaderMutation, h map[string]string) error {
	for _, name := range hm.GetRemoveHeaders() {
		name = strings.ToLower(name)
		switch checkMutation(ep, true, name) {
		case checkOK:
			delete(h, name)
		case checkFail:
			return errors.New("Invalid attempt to remove " + name)
		}
	}
	for _, sh := range hm.GetSetHeaders() {
		name := strings.ToLower(sh.GetHeader().GetKey())
		value := string(sh.GetHeader().GetRawValue())
		if value == "" {
			value = sh.GetHeader().GetValue()
		}
		switch checkMutation(ep, false, name) {
		case checkOK:
			h[name] = value
		case checkFail:
			return errors.New("Invalid attempt to modify " + name)
		}
	}
	return nil
}

func headersAnswer(hm *extprocsvc.HeaderMutation) *extprocsvc.ProcessingResponse {
	return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_RequestHeaders{
		RequestHeaders: &extprocsvc.HeadersResponse{Response: &extprocsvc.CommonResponse{HeaderMutation: hm}},
	}}
}

func bodyAnswer(common *extprocsvc.CommonResponse) *extprocsvc.ProcessingResponse {
	return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_RequestBody{
		RequestBody: &extprocsvc.BodyResponse{Response: common},
	}}
}

func setHeader(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, RawValue: []byte(v)}}
}

var ssn = regexp.MustCompile(`\b\d{3}-\d{2}-\d{4}\b`)

// redactor replaces social security numbers in the request body and
// corrects content-length, as a PII processor must in BUFFERED mode.
func redactor(req *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
	if b := req.GetRequestBody(); b != nil {
		out := ssn.ReplaceAll(b.GetBody(), []byte("[REDACTED]"))
		return bodyAnswer(&extprocsvc.CommonResponse{
			HeaderMutation: &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader("content-length", strconv.Itoa(len(out)))}},
			BodyMutation:   &extprocsvc.BodyMutation{Mutation: &extprocsvc.BodyMutation_Body{Body: out}},
		})
	}
	return headersAnswer(nil)
}

const chatBody = `{"model":"gpt-4o","messages":[{"role":"user","content":"my ssn is 123-45-6789"}]}`

func chatRequest() httpRequest {
	return httpRequest{headers: map[string]string{
		":method": "POST", ":path": "/v1/chat", ":authority": "api.openai.com", ":scheme": "https",
		"authorization": "Bearer sk-workload", "content-type": "application/json",
		"content-length": strconv.Itoa(len(chatBody)), "x-tollgate-model": "gpt-4o",
	}, body: chatBody}
}

func goldenProcessor(t *testing.T, name string) *extprocv3.ExternalProcessor {
	cfg, errs := loadCase(t, "testdata/in/payloadprocessor.yaml")
	require.Empty(t, errs)
	return processorConfig(t, cfg, name)
}

func TestPayloadProcessorRedactsBufferedBody(t *testing.T) {
	ep := goldenProcessor(t, "tollgate.processor.default.pii")
	// The defaults, as generated: request headers and the whole body,
	// nothing of the response, 5s per message, fail closed.
	mode := ep.GetProcessingMode()
	require.Equal(t, extprocv3.ProcessingMode_SEND, mode.GetRequestHeaderMode())
	require.Equal(t, extprocv3.ProcessingMode_BUFFERED, mode.GetRequestBodyMode())
	require.Equal(t, extprocv3.ProcessingMode_SKIP, mode.GetResponseHeaderMode())
	require.Equal(t, extprocv3.ProcessingMode_NONE, mode.GetResponseBodyMode())
	require.Equal(t, 5*time.Second, ep.GetMessageTimeout().AsDuration())
	require.False(t, ep.GetFailureModeAllow())
	require.Equal(t, extprocv3.ExternalProcessor_RETAIN, ep.GetRouteCacheAction())

	srv := &processorServer{answer: redactor}
	got := envoyExtProc(t, ep, startProcessor(t, srv), chatRequest())
	require.Zero(t, got.status, got.details)
	want := strings.Replace(chatBody, "123-45-6789", "[REDACTED]", 1)
	require.Equal(t, want, got.req.body)
	require.Equal(t, strconv.Itoa(len(want)), got.req.headers["content-length"])

	// Headers first, then the whole body in one message; the workload's
	// credential is never shown to the processor.
	srv.mu.Lock()
	defer srv.mu.Unlock()
	require.Len(t, srv.seen, 2)
	require.NotNil(t, srv.seen[0].GetRequestHeaders())
	require.False(t, srv.seen[0].GetRequestHeaders().GetEndOfStream())
	for _, h := range srv.seen[0].GetRequestHeaders().GetHeaders().GetHeaders() {
		require.NotEqual(t, "authorization", h.GetKey())
	}
	require.Equal(t, chatBody, string(srv.seen[1].GetRequestBody().GetBody()))
	require.True(t, srv.seen[1].GetRequestBody().GetEndOfStream())

	t.Run("content-length left wrong", func(t *testing.T) {
		srv := &processorServer{answer: func(req *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
			if req.GetRequestBody() != nil {
				return bodyAnswer(&extprocsvc.CommonResponse{BodyMutation: &extprocsvc.BodyMutation{Mutation: &extprocsvc.BodyMutation_Body{Body: []byte(`{}`)}}})
			}
			return headersAnswer(nil)
		}}
		got := envoyExtProc(t, ep, startProcessor(t, srv), chatRequest())
		require.Equal(t, 500, got.status)
	})
}

func TestPayloadProcessorHeaderMutationRules(t *testing.T) {
	mutating := func(hm *extprocsvc.HeaderMutation) *processorServer {
		return &processorServer{answer: func(req *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
			if req.GetRequestHeaders() != nil {
				return headersAnswer(hm)
			}
			return bodyAnswer(nil)
		}}
	}
	set := func(k, v string) *extprocsvc.HeaderMutation {
		return &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader(k, v)}}
	}

	// Default onDisallowed: Refuse (disallow_is_error): the request fails.
	pii := goldenProcessor(t, "tollgate.processor.default.pii")
	require.True(t, pii.GetMutationRules().GetDisallowIsError().GetValue())
	for name, hm := range map[string]*extprocsvc.HeaderMutation{
		"x-tollgate-model":           set("x-tollgate-model", "gpt-4o-mini"),
		"authorization":              set("authorization", "Bearer sk-processor"),
		"x-api-key":                  set("X-Api-Key", "sk-processor"),
		":authority":                 set(":authority", "evil.example"),
		":path":                      set(":path", "/v1/other"),
		"host":                       set("host", "evil.example"),
		"x-envoy-original-path":      set("x-envoy-original-path", "/x"),
		"remove authorization":       {RemoveHeaders: []string{"authorization"}},
		"remove x-tollgate-model":    {RemoveHeaders: []string{"x-tollgate-model"}},
		"proxy-authorization":        set("proxy-authorization", "Basic eA=="),
		"x-amz-security-token":       set("x-amz-security-token", "t"),
		"x-tollgate-client-id (new)": set("x-tollgate-client-id", "spiffe://corp.example/ns/a/sa/b"),
	} {
		t.Run("refuse "+name, func(t *testing.T) {
			got := envoyExtProc(t, pii, startProcessor(t, mutating(hm)), chatRequest())
			require.Equal(t, 500, got.status, "a mutation of %s must be refused", name)
		})
	}
	t.Run("allowed", func(t *testing.T) {
		got := envoyExtProc(t, pii, startProcessor(t, mutating(set("x-pii-redacted", "1"))), chatRequest())
		require.Zero(t, got.status, got.details)
		require.Equal(t, "1", got.req.headers["x-pii-redacted"])
	})

	// onDisallowed: Ignore with an allow list: only x-guard-* (not
	// x-guard-internal) changes; the rest is skipped and the request goes on.
	guard := goldenProcessor(t, "tollgate.processor.default.guard")
	require.False(t, guard.GetMutationRules().GetDisallowIsError().GetValue())
	hm := &extprocsvc.HeaderMutation{
		SetHeaders: []*corev3.HeaderValueOption{
			setHeader("x-tollgate-model", "gpt-4o-mini"), setHeader("authorization", "Bearer sk-processor"),
			setHeader("x-other", "1"), setHeader("x-guard-verdict", "pass"), setHeader("x-guard-internal", "1"),
		},
		RemoveHeaders: []string{"content-type", "x-tollgate-model"},
	}
	got := envoyExtProc(t, guard, startProcessor(t, mutating(hm)), chatRequest())
	require.Zero(t, got.status, got.details)
	want := chatRequest().headers
	want["x-guard-verdict"] = "pass"
	require.Equal(t, want, got.req.headers)
}

func TestPayloadProcessorImmediateResponse(t *testing.T) {
	refuse := &processorServer{answer: func(*extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocsvc.ImmediateResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden}, Body: []byte(`{"error":"guard rail"}`),
		}}}
	}}
	addr := startProcessor(t, refuse)
	guard := goldenProcessor(t, "tollgate.processor.default.guard")
	require.False(t, guard.GetDisableImmediateResponse())
	require.Equal(t, 403, envoyExtProc(t, guard, addr, chatRequest()).status)

	// immediateResponse: false: Envoy ignores the refusal and, with it, the
	// processor: the request goes on unprocessed (what the README warns).
	cfg := loadInline(t, processorDoc("5s", false)+"  mutations: {immediateResponse: false}\n")
	ep := processorConfig(t, cfg, "tollgate.processor.default.proc")
	require.True(t, ep.GetDisableImmediateResponse())
	got := envoyExtProc(t, ep, addr, chatRequest())
	require.Zero(t, got.status)
	require.Equal(t, chatBody, got.req.body)
}

// processorDoc is a gateway, a route and its PayloadProcessor with the
// given message timeout and failure mode. The Backend's address is only
// what Envoy would dial; the test's client dials its own server.
func processorDoc(timeout string, failOpen bool) string {
	return `apiVersion: tollgate.dev/v1alpha1
kind: Gateway
metadata: {name: egress}
spec:
  listeners: [{name: http, port: 10080, protocol: HTTP}]
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: openai}
spec: {provider: openai}
---
apiVersion: tollgate.dev/v1alpha1
kind: Backend
metadata: {name: proc}
spec: {hostname: proc.internal, port: 9002, protocol: HTTP/2, addresses: [{ip: 127.0.0.1}]}
---
apiVersion: tollgate.dev/v1alpha1
kind: HTTPRoute
metadata: {name: chat}
spec:
  parentRefs: [{name: egress}]
  rules: [{backendRefs: [{name: openai}]}]
---
apiVersion: tollgate.dev/v1alpha1
kind: PayloadProcessor
metadata: {name: proc}
spec:
  targetRefs: [{kind: HTTPRoute, name: chat}]
  service: {backendRef: {name: proc}}
  messageTimeout: ` + timeout + `
  failOpen: ` + strconv.FormatBool(failOpen) + `
`
}

func TestPayloadProcessorFailureMode(t *testing.T) {
	// A port nothing listens on.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	unreachable := lis.Addr().String()
	require.NoError(t, lis.Close())
	slow := startProcessor(t, &processorServer{answer: redactor, delay: time.Second})

	for _, failOpen := range []bool{false, true} {
		ep := processorConfig(t, loadInline(t, processorDoc("100ms", failOpen)), "tollgate.processor.default.proc")
		require.Equal(t, 100*time.Millisecond, ep.GetMessageTimeout().AsDuration())
		require.Equal(t, failOpen, ep.GetFailureModeAllow())
		name := map[bool]string{false: "fail closed", true: "fail open"}[failOpen]
		t.Run(name+"/unreachable", func(t *testing.T) {
			got := envoyExtProc(t, ep, unreachable, chatRequest())
			if failOpen {
				require.Zero(t, got.status, got.details)
				require.Equal(t, chatBody, got.req.body, "passed unprocessed")
			} else {
				require.Equal(t, 500, got.status)
			}
		})
		t.Run(name+"/slower than messageTimeout", func(t *testing.T) {
			start := time.Now()
			got := envoyExtProc(t, ep, slow, chatRequest())
			require.Less(t, time.Since(start), 900*time.Millisecond, "must not wait for the slow answer")
			if failOpen {
				require.Zero(t, got.status, got.details)
				require.Equal(t, chatBody, got.req.body, "passed unprocessed")
			} else {
				require.Equal(t, 504, got.status)
			}
		})
	}
}
