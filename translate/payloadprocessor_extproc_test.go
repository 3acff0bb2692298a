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
//   - on the response path (envoyExtProcResponse), Filter::encodeHeaders
//     and Filter::encodeData into the same onHeaders / onData, STREAMED:
//     one response_body message per chunk, each answer's body mutation
//     applied to its own chunk (handleBodyResponse, StreamedBodyCallback),
//     and DownstreamFilterManager::sendLocalReply
//     (source/common/http/filter_manager.cc) for what an error does once
//     the response headers have gone downstream: reset the stream;
//   - MutationUtils::applyHeaderMutations (mutation_utils.cc) and
//     Checker::check / Checker::isAllowed in
//     source/extensions/filters/common/mutation_rules/mutation_rules.cc for
//     which mutations apply (checkMutation below).

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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
	// slowIf picks the messages delay holds back (all of them when nil).
	slowIf func(*extprocsvc.ProcessingRequest) bool

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
		if s.delay > 0 && (s.slowIf == nil || s.slowIf(req)) {
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
	call, closeStream, err := dialProcessor(t, ep, addr)
	if err != nil {
		return grpcError(err)
	}
	defer closeStream()
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

// processorCall sends one message on the filter's stream and waits for
// its answer, no longer than the message timeout: Filter::sendBodyChunk
// and Filter::onHeaders arm the timer (ProcessorState::onStartProcessorCall)
// for each message they send, and an answer stops it
// (ProcessorState::onFinishProcessorCall). errTimeout when it fires.
type processorCall func(*extprocsvc.ProcessingRequest) (*extprocsvc.ProcessingResponse, error)

// dialProcessor opens the filter's one gRPC stream to the processor at
// addr (Filter::openStream); closeStream ends it (Filter::closeStream).
// Every wait is bounded: the stream by 5s, each answer by the timeout.
func dialProcessor(t *testing.T, ep *extprocv3.ExternalProcessor, addr string) (call processorCall, closeStream func(), err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	stream, err := extprocsvc.NewExternalProcessorClient(conn).Process(ctx, grpc.WaitForReady(false))
	if err != nil {
		_ = conn.Close()
		cancel()
		return nil, nil, err
	}
	closeStream = func() {
		_ = stream.CloseSend()
		_ = conn.Close()
		cancel()
	}
	msgTimeout := ep.GetMessageTimeout().AsDuration()
	type recv struct {
		resp *extprocsvc.ProcessingResponse
		err  error
	}
	call = func(m *extprocsvc.ProcessingRequest) (*extprocsvc.ProcessingResponse, error) {
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
	return call, closeStream, nil
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

// The response path.

// httpResponse is a response as the filter's encoder sees it: its headers
// (lowercase, :status among them), then its body in the chunks the
// upstream flushed, each reaching Filter::encodeData on its own.
type httpResponse struct {
	headers map[string]string
	chunks  []string
}

// responseOutcome is what the downstream client received.
type responseOutcome struct {
	// status: a local reply replaced the response before its headers went
	// out (headers and chunks are then empty).
	status  int
	details string
	headers map[string]string
	// chunks: the body as it arrived, chunk by chunk, in order.
	chunks []string
	// reset: an error after the headers went out, when all Envoy can do is
	// reset the stream: the body ends after chunks, cut short.
	reset bool
}

// envoyExtProcResponse processes one response with the ExternalProcessor
// ep against the server at addr, as Envoy's ext_proc filter would on the
// response path. It plays that path alone, on a stream of its own (Envoy
// goes on with the request's stream, so a processor that also sees the
// request gets these messages after the request's). It mirrors:
//
//   - Filter::encodeHeaders → Filter::onHeaders: one response_headers
//     message (end_of_stream only when there is no body), the response held
//     until the answer (StopIteration); ProcessorState::handleHeadersResponse
//     applies its header mutation under the mutation rules
//     (applyHeaderMutation), then the headers go downstream;
//   - Filter::encodeData → Filter::onData, STREAMED: each chunk as it comes,
//     in a response_body message of its own, end_of_stream on the last; the
//     answers come back in order and ProcessorState::handleBodyResponse
//     (StreamedBodyCallback) applies each one's body mutation to its own
//     chunk (dequeueStreamingChunk, MutationUtils::applyBodyMutations) and
//     injects it downstream (injectDataToFilterChain, when not empty). A
//     header mutation in such an answer is neither checked nor applied: the
//     headers have gone (only send_body_without_waiting_for_header_response,
//     which tollgate does not set, applies it). Envoy pipelines the chunks,
//     sending the next before the last is answered; this client waits for
//     each answer first, which is what a processor sees when the upstream's
//     chunks come slower than its answers (a token stream), and the answers'
//     order is the same;
//   - Filter::onMessageTimeout, Filter::onGrpcError: with
//     failure_mode_allow, processing ends and the rest, the chunk in flight
//     included, goes on unprocessed (clearAsyncState re-injects the queued
//     chunk, onData then continues "processing complete"); without it, a
//     504 or a 500 through Filter::sendImmediateResponse;
//   - DownstreamFilterManager::sendLocalReply (filter_manager.cc), where any
//     local reply ends: before the response headers went downstream it
//     replaces the response (sendDirectLocalReply); after, "response headers
//     have already been sent to the client. All we can do at this point is
//     reset the stream".
func envoyExtProcResponse(t *testing.T, ep *extprocv3.ExternalProcessor, addr string, in httpResponse) responseOutcome {
	t.Helper()
	mode := ep.GetProcessingMode()
	bodyMode := mode.GetResponseBodyMode()
	if bodyMode != extprocv3.ProcessingMode_NONE && bodyMode != extprocv3.ProcessingMode_STREAMED {
		t.Fatalf("response body mode %s is not modelled", bodyMode)
	}
	headers := maps.Clone(in.headers)
	var got responseOutcome
	headersSent := false
	forwardHeaders := func() {
		if !headersSent {
			got.headers, headersSent = headers, true
		}
	}
	deliver := func(chunk string) {
		if chunk != "" {
			got.chunks = append(got.chunks, chunk)
		}
	}
	localReply := func(status int, details string) responseOutcome {
		if !headersSent {
			return responseOutcome{status: status, details: details}
		}
		got.reset, got.details = true, details
		return got
	}
	// passRest: processing_complete_; from chunk at on, the response goes
	// through unprocessed.
	passRest := func(at int) responseOutcome {
		forwardHeaders()
		for _, c := range in.chunks[at:] {
			deliver(c)
		}
		return got
	}
	fail := func(err error, at int) responseOutcome {
		switch {
		case ep.GetFailureModeAllow():
			return passRest(at)
		case errors.Is(err, errTimeout):
			return localReply(504, "ext_proc_error_per-message_timeout_exceeded")
		}
		return localReply(500, "ext_proc_error_gRPC_error: "+err.Error())
	}
	// immediate is the kImmediateResponse case of Filter::onReceiveMessage.
	immediate := func(ir *extprocsvc.ImmediateResponse, at int) responseOutcome {
		if ep.GetDisableImmediateResponse() {
			return passRest(at) // spurious: the processor is ignored from now on
		}
		status := int(ir.GetStatus().GetCode())
		if status < 200 {
			status = 200 // MutationUtils::isValidHttpStatus, DefaultImmediateStatus
		}
		return localReply(status, ir.GetDetails())
	}
	if mode.GetResponseHeaderMode() == extprocv3.ProcessingMode_SKIP && bodyMode == extprocv3.ProcessingMode_NONE {
		return passRest(0)
	}
	call, closeStream, err := dialProcessor(t, ep, addr)
	if err != nil {
		return fail(err, 0)
	}
	defer closeStream()

	if mode.GetResponseHeaderMode() != extprocv3.ProcessingMode_SKIP {
		resp, err := call(&extprocsvc.ProcessingRequest{Request: &extprocsvc.ProcessingRequest_ResponseHeaders{
			ResponseHeaders: &extprocsvc.HttpHeaders{Headers: headerMap(ep, headers), EndOfStream: len(in.chunks) == 0},
		}})
		if err != nil {
			return fail(err, 0)
		}
		switch {
		case resp.GetImmediateResponse() != nil:
			return immediate(resp.GetImmediateResponse(), 0)
		case resp.GetResponseHeaders() == nil:
			return passRest(0) // spurious (Filter::onReceiveMessage)
		}
		common := resp.GetResponseHeaders().GetResponse()
		if common.GetStatus() == extprocsvc.CommonResponse_CONTINUE_AND_REPLACE {
			t.Fatal("CONTINUE_AND_REPLACE is not modelled")
		}
		if hm := common.GetHeaderMutation(); hm != nil {
			if err := applyHeaderMutation(ep, hm, headers); err != nil {
				return localReply(500, err.Error())
			}
		}
	}
	forwardHeaders()

	for i, chunk := range in.chunks {
		if bodyMode != extprocv3.ProcessingMode_STREAMED {
			deliver(chunk)
			continue
		}
		resp, err := call(&extprocsvc.ProcessingRequest{Request: &extprocsvc.ProcessingRequest_ResponseBody{
			ResponseBody: &extprocsvc.HttpBody{Body: []byte(chunk), EndOfStream: i == len(in.chunks)-1},
		}})
		if err != nil {
			return fail(err, i)
		}
		switch {
		case resp.GetImmediateResponse() != nil:
			return immediate(resp.GetImmediateResponse(), i)
		case resp.GetResponseBody() == nil:
			return passRest(i) // spurious
		}
		switch m := resp.GetResponseBody().GetResponse().GetBodyMutation().GetMutation().(type) {
		case *extprocsvc.BodyMutation_Body:
			chunk = string(m.Body)
		case *extprocsvc.BodyMutation_ClearBody:
			if m.ClearBody {
				chunk = ""
			}
		}
		deliver(chunk)
	}
	return got
}

func responseHeadersAnswer(hm *extprocsvc.HeaderMutation) *extprocsvc.ProcessingResponse {
	return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ResponseHeaders{
		ResponseHeaders: &extprocsvc.HeadersResponse{Response: &extprocsvc.CommonResponse{HeaderMutation: hm}},
	}}
}

func responseBodyAnswer(common *extprocsvc.CommonResponse) *extprocsvc.ProcessingResponse {
	return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ResponseBody{
		ResponseBody: &extprocsvc.BodyResponse{Response: common},
	}}
}

func setMutation(k, v string) *extprocsvc.HeaderMutation {
	return &extprocsvc.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader(k, v)}}
}

var emailAddress = regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+`)

// The addresses the completion gives away.
var streamEmails = []string{"help@openai-example.com", "jane.doe@corp.example"}

// completionStream is the OpenAI chat completion stream of
// testdata/providers/openai-chat.stream.sse, one chunk per SSE event as
// the upstream flushes them, its content delta written over three events
// of the same form, two of which give away an email address.
func completionStream(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("testdata/providers/openai-chat.stream.sse")
	require.NoError(t, err)
	const delta = `"delta":{"content":"7"}`
	var out []string
	for _, ev := range strings.SplitAfter(string(raw), "\n\n") {
		switch {
		case ev == "":
		case strings.Contains(ev, delta):
			for _, text := range []string{"Write to " + streamEmails[0], " or to me, " + streamEmails[1], ", any time."} {
				q, err := json.Marshal(text)
				require.NoError(t, err)
				out = append(out, strings.Replace(ev, delta, `"delta":{"content":`+string(q)+`}`, 1))
			}
		default:
			out = append(out, ev)
		}
	}
	// role, three content deltas, finish_reason, usage, [DONE]
	require.Len(t, out, 7)
	require.Equal(t, "data: [DONE]\n\n", out[6])
	return out
}

// redacted is what a redactor of each chunk leaves of chunks.
func redacted(chunks []string) []string {
	out := make([]string, len(chunks))
	for i, c := range chunks {
		for _, e := range streamEmails {
			c = strings.ReplaceAll(c, e, "[EMAIL]")
		}
		out[i] = c
	}
	return out
}

func completionResponse(t *testing.T) httpResponse {
	return httpResponse{headers: map[string]string{
		":status": "200", "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache",
		"openai-processing-ms": "112", "x-request-id": "req_8d2f0c", "x-envoy-upstream-service-time": "118",
	}, chunks: completionStream(t)}
}

// emailRedactor answers the response headers with hm and replaces the
// email addresses of every body chunk, each on its own: a chunk is all a
// Streamed processor sees at a time.
func emailRedactor(hm *extprocsvc.HeaderMutation) *processorServer {
	return &processorServer{answer: func(req *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
		if b := req.GetResponseBody(); b != nil {
			return responseBodyAnswer(&extprocsvc.CommonResponse{BodyMutation: &extprocsvc.BodyMutation{
				Mutation: &extprocsvc.BodyMutation_Body{Body: emailAddress.ReplaceAll(b.GetBody(), []byte("[EMAIL]"))},
			}})
		}
		return responseHeadersAnswer(hm)
	}}
}

// responsePhasesDoc is processorDoc with a processor of the response
// headers and the Streamed response body only.
func responsePhasesDoc(timeout string, failOpen bool) string {
	return processorDoc(timeout, failOpen) + "  phases: {requestHeaders: false, requestBody: None, responseHeaders: true, responseBody: Streamed}\n"
}

func TestPayloadProcessorResponsePhases(t *testing.T) {
	// The golden guard: response headers and the Streamed response body,
	// no trailers; onDisallowed Ignore, allow x-guard-* but x-guard-internal.
	guard := goldenProcessor(t, "tollgate.processor.default.guard")
	mode := guard.GetProcessingMode()
	require.Equal(t, extprocv3.ProcessingMode_SEND, mode.GetResponseHeaderMode())
	require.Equal(t, extprocv3.ProcessingMode_STREAMED, mode.GetResponseBodyMode())
	require.Equal(t, extprocv3.ProcessingMode_SKIP, mode.GetResponseTrailerMode())
	require.False(t, guard.GetObservabilityMode())
	require.False(t, guard.GetMutationRules().GetDisallowIsError().GetValue())

	stream := completionStream(t)
	hm := &extprocsvc.HeaderMutation{
		SetHeaders: []*corev3.HeaderValueOption{
			setHeader("x-guard-verdict", "pass"),
			setHeader("x-tollgate-usage", "0"), setHeader("x-envoy-upstream-service-time", "0"),
			setHeader(":status", "403"), setHeader("x-guard-internal", "1"), setHeader("content-type", "text/plain"),
		},
		RemoveHeaders: []string{"x-envoy-upstream-service-time", "x-request-id"},
	}
	srv := emailRedactor(hm)
	start := time.Now()
	got := envoyExtProcResponse(t, guard, startProcessor(t, srv), completionResponse(t))
	require.Less(t, time.Since(start), time.Second)
	require.Zero(t, got.status, got.details)
	require.False(t, got.reset)
	// Only the allowed header changed; the rest was skipped (Ignore).
	want := completionResponse(t).headers
	want["x-guard-verdict"] = "pass"
	require.Equal(t, want, got.headers)
	// Every chunk redacted on its own, none lost, in order, to [DONE].
	require.Equal(t, redacted(stream), got.chunks)
	body := strings.Join(got.chunks, "")
	for _, e := range streamEmails {
		require.NotContains(t, body, e)
	}
	require.Equal(t, 2, strings.Count(body, "[EMAIL]"))
	require.True(t, strings.HasSuffix(body, "data: [DONE]\n\n"))

	// What the processor saw: the headers, then each chunk as the upstream
	// sent it, in order, end_of_stream on the last only.
	srv.mu.Lock()
	seen := slices.Clone(srv.seen)
	srv.mu.Unlock()
	require.Len(t, seen, 1+len(stream))
	require.NotNil(t, seen[0].GetResponseHeaders())
	require.False(t, seen[0].GetResponseHeaders().GetEndOfStream())
	for i, c := range stream {
		b := seen[1+i].GetResponseBody()
		require.NotNil(t, b, "message %d", 1+i)
		require.Equal(t, c, string(b.GetBody()))
		require.Equal(t, i == len(stream)-1, b.GetEndOfStream())
	}

	t.Run("a chunk answer's header mutation is not applied", func(t *testing.T) {
		// The headers went downstream with the headers answer: a body
		// answer cannot change them, nor be refused for trying.
		refuse := processorConfig(t, loadInline(t, responsePhasesDoc("2s", false)), "tollgate.processor.default.proc")
		srv := &processorServer{answer: func(req *extprocsvc.ProcessingRequest) *extprocsvc.ProcessingResponse {
			if req.GetResponseBody() != nil {
				return responseBodyAnswer(&extprocsvc.CommonResponse{HeaderMutation: setMutation("x-tollgate-usage", "0")})
			}
			return responseHeadersAnswer(nil)
		}}
		got := envoyExtProcResponse(t, refuse, startProcessor(t, srv), completionResponse(t))
		require.Zero(t, got.status, got.details)
		require.False(t, got.reset)
		require.Equal(t, completionResponse(t).headers, got.headers)
		require.Equal(t, stream, got.chunks)
	})

	// Default onDisallowed (Refuse): the response is replaced by a 500
	// before its headers go out, and no chunk reaches the processor.
	refuse := processorConfig(t, loadInline(t, responsePhasesDoc("2s", false)), "tollgate.processor.default.proc")
	require.True(t, refuse.GetMutationRules().GetDisallowIsError().GetValue())
	require.Equal(t, extprocv3.ProcessingMode_STREAMED, refuse.GetProcessingMode().GetResponseBodyMode())
	for name, hm := range map[string]*extprocsvc.HeaderMutation{
		"x-tollgate-usage":                     setMutation("x-tollgate-usage", "0"),
		"x-tollgate-model":                     setMutation("X-Tollgate-Model", "gpt-4o-mini"),
		"x-envoy-upstream-service-time":        setMutation("x-envoy-upstream-service-time", "0"),
		"x-envoy-ratelimited":                  setMutation("x-envoy-ratelimited", "true"),
		"remove x-envoy-upstream-service-time": {RemoveHeaders: []string{"x-envoy-upstream-service-time"}},
		":status":                              setMutation(":status", "403"),
	} {
		t.Run("refuse "+name, func(t *testing.T) {
			srv := emailRedactor(hm)
			got := envoyExtProcResponse(t, refuse, startProcessor(t, srv), completionResponse(t))
			require.Equal(t, 500, got.status, "a change of %s must be refused", name)
			require.Nil(t, got.headers)
			require.Empty(t, got.chunks)
			srv.mu.Lock()
			defer srv.mu.Unlock()
			require.Len(t, srv.seen, 1, "no chunk is sent after the refusal")
		})
	}
	t.Run("refuse: allowed", func(t *testing.T) {
		got := envoyExtProcResponse(t, refuse, startProcessor(t, emailRedactor(setMutation("x-pii-redacted", "1"))), completionResponse(t))
		require.Zero(t, got.status, got.details)
		require.Equal(t, "1", got.headers["x-pii-redacted"])
		require.Equal(t, redacted(stream), got.chunks)
	})
}

func TestPayloadProcessorResponseFailureMode(t *testing.T) {
	stream := completionStream(t)
	// The chunk the processor is slow on: the second content delta, which
	// gives away an address.
	const slowChunk = 2
	require.Contains(t, stream[slowChunk], streamEmails[1])
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	unreachable := lis.Addr().String()
	require.NoError(t, lis.Close())

	for _, failOpen := range []bool{false, true} {
		ep := processorConfig(t, loadInline(t, responsePhasesDoc("100ms", failOpen)), "tollgate.processor.default.proc")
		require.Equal(t, 100*time.Millisecond, ep.GetMessageTimeout().AsDuration())
		require.Equal(t, failOpen, ep.GetFailureModeAllow())
		name := map[bool]string{false: "fail closed", true: "fail open"}[failOpen]
		slow := func(t *testing.T, slowIf func(*extprocsvc.ProcessingRequest) bool) (responseOutcome, *processorServer) {
			srv := emailRedactor(nil)
			srv.delay, srv.slowIf = time.Second, slowIf
			start := time.Now()
			got := envoyExtProcResponse(t, ep, startProcessor(t, srv), completionResponse(t))
			require.Less(t, time.Since(start), 900*time.Millisecond, "must not wait for the slow answer")
			return got, srv
		}

		t.Run(name+"/unreachable", func(t *testing.T) {
			got := envoyExtProcResponse(t, ep, unreachable, completionResponse(t))
			if failOpen {
				require.Zero(t, got.status, got.details)
				require.Equal(t, stream, got.chunks, "passed unprocessed")
			} else {
				require.Equal(t, 500, got.status)
				require.Empty(t, got.chunks)
			}
		})
		t.Run(name+"/response headers slower than messageTimeout", func(t *testing.T) {
			got, _ := slow(t, func(r *extprocsvc.ProcessingRequest) bool { return r.GetResponseHeaders() != nil })
			if failOpen {
				require.Zero(t, got.status, got.details)
				require.False(t, got.reset)
				require.Equal(t, completionResponse(t).headers, got.headers)
				require.Equal(t, stream, got.chunks, "passed unprocessed, in order")
			} else {
				// The headers were still held: the response is replaced.
				require.Equal(t, 504, got.status)
				require.Equal(t, "ext_proc_error_per-message_timeout_exceeded", got.details)
				require.Nil(t, got.headers)
				require.Empty(t, got.chunks)
			}
		})
		t.Run(name+"/a chunk slower than messageTimeout", func(t *testing.T) {
			got, srv := slow(t, func(r *extprocsvc.ProcessingRequest) bool {
				return string(r.GetResponseBody().GetBody()) == stream[slowChunk]
			})
			// The headers and the chunks before the slow one went out as
			// processed.
			require.Zero(t, got.status)
			require.Equal(t, completionResponse(t).headers, got.headers)
			if failOpen {
				// The rest goes on unprocessed: the slow chunk's address
				// reaches the client.
				require.False(t, got.reset)
				require.Equal(t, append(redacted(stream[:slowChunk]), stream[slowChunk:]...), got.chunks)
				require.Contains(t, strings.Join(got.chunks, ""), streamEmails[1])
			} else {
				// Too late for a 504: the stream is reset, cut short
				// after the processed chunks; nothing unprocessed leaks.
				require.True(t, got.reset)
				require.Equal(t, "ext_proc_error_per-message_timeout_exceeded", got.details)
				require.Equal(t, redacted(stream[:slowChunk]), got.chunks)
			}
			// Nothing is sent to the processor after the timeout.
			srv.mu.Lock()
			defer srv.mu.Unlock()
			require.LessOrEqual(t, len(srv.seen), 1+slowChunk+1)
		})
	}
}
