package peer

import (
	"fmt"
	"net/http"
	"strconv"
)

// events streams the node's events: GET /v1/events?since=SEQ (api.NodeEvent).
func (h *apiHandler) events(w http.ResponseWriter, r *http.Request) {
	var since uint64
	if s := r.URL.Query().Get("since"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("since %q: want an event number", s))
			return
		}
		since = v
	}
	recent, ch := h.cfg.Events.subscribe(since)
	defer h.cfg.Events.unsubscribe(ch)
	ev := startEvents(w, http.NewResponseController(w))
	for _, e := range recent {
		ev.sendAny(e)
	}
	ev.flush()
	for ev.err == nil {
		select {
		case <-r.Context().Done():
			return
		case e, ok := <-ch:
			if !ok {
				return // fell behind: the client reconnects with since
			}
			ev.sendAny(e)
			// Send what else is waiting before the flush.
			for drained := false; !drained && ev.err == nil; {
				select {
				case e, ok := <-ch:
					if !ok {
						ev.flush()
						return
					}
					ev.sendAny(e)
				default:
					drained = true
				}
			}
			ev.flush()
		}
	}
}
