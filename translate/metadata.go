package translate

// The request's attribution and accounting facts live in Envoy's dynamic
// metadata, under one namespace, written by the listener's own filters
// (pipeline.go) and read by the rate limit filter's descriptors, the
// access logs and the stats access logger. Identity keys come only from
// the verified client certificate, never from a header a workload sent.
const (
	// MetadataNamespace is the dynamic metadata namespace of every key
	// below (%DYNAMIC_METADATA(tollgate:<key>)%).
	MetadataNamespace = "tollgate"

	// Identity (from the verified peer certificate's URI SAN, on
	// listeners that verify clients).
	MetaSPIFFEID       = "spiffe_id"
	MetaNamespace      = "namespace"
	MetaServiceAccount = "service_account"

	// Request body (JSON), read before the rate limit filter.
	MetaRequestModel    = "request_model"
	MetaMaxOutputTokens = "max_output_tokens"
	MetaStream          = "stream"

	// Response (JSON body, or SSE events on Envoy 1.38+).
	MetaResponseModel = "response_model"
	MetaInputTokens   = "input_tokens"
	MetaOutputTokens  = "output_tokens"
	MetaCachedTokens  = "cached_tokens"
	MetaTotalTokens   = "total_tokens"
)

// MetadataFormat is the substitution format command that reads one key.
func MetadataFormat(key string) string {
	return "%DYNAMIC_METADATA(" + MetadataNamespace + ":" + key + ")%"
}
