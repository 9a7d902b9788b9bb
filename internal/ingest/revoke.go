package ingest

import (
	"github.com/nats-io/nats-server/v2/server"
)

func tokenUser(id string) string { return "token-" + id }

// DisconnectToken closes every connection of the embedded NATS server (MQTT devices, NATS
// clients) that authenticated with the token id, and returns how many it closed. A revoked
// token is refused at once for new connections; this ends the ones already open, which would
// otherwise keep their permissions until they disconnect.
func DisconnectToken(ns *server.Server, id string) (int, error) {
	var ids []uint64
	for offset := 0; ; {
		cz, err := ns.Connz(&server.ConnzOptions{Username: true, User: tokenUser(id), State: server.ConnOpen, Offset: offset, Limit: 1024})
		if err != nil {
			return 0, err
		}
		for _, c := range cz.Conns {
			ids = append(ids, c.Cid)
		}
		offset += len(cz.Conns)
		if len(cz.Conns) == 0 || offset >= cz.Total {
			break
		}
	}
	n := 0
	for _, cid := range ids {
		if ns.DisconnectClientByID(cid) == nil {
			n++
		}
	}
	return n, nil
}
