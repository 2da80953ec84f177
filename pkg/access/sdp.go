package access

import (
	"slices"

	"github.com/parley/parley/pkg/auth"
	"github.com/parley/parley/pkg/protocol"
	"github.com/pion/sdp/v3"
)

// OfferSources returns the publish sources an offer for a stream of kind
// (camera or screen) would send: one per audio or video section that sends
// (not rejected, not inactive or recvonly), in canonical order.
func OfferSources(kind, offer string) ([]string, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		return nil, &protocol.Error{Code: protocol.CodeInvalidSDP, Reason: "the offer is not valid SDP: " + err.Error()}
	}
	var out []string
	add := func(s string) {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	for _, m := range sd.MediaDescriptions {
		media := m.MediaName.Media
		if media != "audio" && media != "video" {
			continue
		}
		if m.MediaName.Port.Value == 0 {
			continue
		}
		if _, ok := m.Attribute("inactive"); ok {
			continue
		}
		if _, ok := m.Attribute("recvonly"); ok {
			continue
		}
		switch {
		case kind == protocol.KindScreen:
			add(auth.SourceScreen)
		case media == "video":
			add(auth.SourceCamera)
		default:
			add(auth.SourceMicrophone)
		}
	}
	slices.SortFunc(out, func(a, b string) int {
		return slices.Index(auth.Sources, a) - slices.Index(auth.Sources, b)
	})
	return out, nil
}
