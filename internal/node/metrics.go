package node

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// rpcMetrics registers the node RPC series with reg and returns the
// observer every client reports its calls to. A long-poll
// getblocktemplate is a call too: its duration is how long the node held
// it.
func rpcMetrics(reg prometheus.Registerer) func(method string, d time.Duration, err error) {
	seconds := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "powcoord_node_rpc_seconds",
		Help:    "Duration of JSON-RPC calls to the node, by method.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
	}, []string{"method"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "powcoord_node_rpc_errors_total",
		Help: "JSON-RPC calls to the node that failed, by method and kind (rpc: the node answered an error; transport: no usable answer).",
	}, []string{"method", "kind"})
	if reg != nil {
		reg.MustRegister(seconds, errs)
	}
	return func(method string, d time.Duration, err error) {
		seconds.WithLabelValues(method).Observe(d.Seconds())
		if err == nil {
			return
		}
		kind := "transport"
		var rpcErr *RPCError
		if errors.As(err, &rpcErr) {
			kind = "rpc"
		}
		errs.WithLabelValues(method, kind).Inc()
	}
}
