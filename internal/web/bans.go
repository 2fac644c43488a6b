package web

import (
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"

	"github.com/powcoord/powcoord/internal/coordinator"
)

// BanList is what the ban endpoints read and change: a coordinator's
// bans (*coordinator.Coordinator implements it).
type BanList interface {
	// Bans lists the addresses banned now.
	Bans() []coordinator.Ban
	// Unban lifts the ban of an address and reports whether it had one.
	Unban(ip string) bool
}

// BanAccess says who may lift a ban with DELETE /api/bans/{ip}.
type BanAccess struct {
	// Admin allows every request: the routes are served on the admin
	// HTTP listener, which only the operator can reach.
	Admin bool
	// Token, when not empty, allows requests that carry the header
	// "Authorization: Bearer <Token>".
	Token string
}

// BanRoutes registers on mux GET /api/bans, the bans of current() as a
// JSON array (coordinator.Ban: address, reason, counts, since and until),
// and DELETE /api/bans/{ip}, which lifts one as access allows (403
// otherwise, 400 for a malformed address, 404 when it is not banned).
// current may return nil while there is no coordinator (a front-end
// without a lease): both then answer 503.
func BanRoutes(mux *http.ServeMux, current func() BanList, access BanAccess, log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	mux.HandleFunc("GET /api/bans", func(w http.ResponseWriter, r *http.Request) {
		b := current()
		if b == nil {
			http.Error(w, "no coordinator is serving miners now", http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, b.Bans())
	})
	mux.HandleFunc("DELETE /api/bans/{ip}", func(w http.ResponseWriter, r *http.Request) {
		if !access.allows(r) {
			http.Error(w, "lifting a ban needs the admin HTTP listener (--admin-http) or the header Authorization: Bearer <--admin-token>", http.StatusForbidden)
			return
		}
		raw := r.PathValue("ip")
		a, err := netip.ParseAddr(raw)
		if err != nil || a.Zone() != "" {
			http.Error(w, fmt.Sprintf("ip %q: not an IP address", raw), http.StatusBadRequest)
			return
		}
		b := current()
		if b == nil {
			http.Error(w, "no coordinator is serving miners now", http.StatusServiceUnavailable)
			return
		}
		ip := a.Unmap().String()
		if !b.Unban(ip) {
			http.Error(w, fmt.Sprintf("ip %s: not banned", ip), http.StatusNotFound)
			return
		}
		log.Info("ban lifted over HTTP", "ip", ip, "remote", r.RemoteAddr)
		writeJSON(w, map[string]string{"unbanned": ip})
	})
}

// allows reports whether r may lift a ban.
func (a BanAccess) allows(r *http.Request) bool {
	if a.Admin {
		return true
	}
	if a.Token == "" {
		return false
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(a.Token)) == 1
}
