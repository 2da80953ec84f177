package access

import (
	"fmt"
	"slices"
	"strings"

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

// FilterOffer keeps in each audio and video section of an offer only the
// codecs allowed lists (MIME types; retransmission formats of kept codecs
// stay), so the answer can choose only those. A sending section left with
// none is refused with UNSUPPORTED_CODEC naming what the room allows.
func FilterOffer(offer string, allowed []string) (string, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		return "", &protocol.Error{Code: protocol.CodeInvalidSDP, Reason: "the offer is not valid SDP: " + err.Error()}
	}
	for _, m := range sd.MediaDescriptions {
		media := m.MediaName.Media
		if (media != "audio" && media != "video") || m.MediaName.Port.Value == 0 {
			continue
		}
		mime := map[string]string{} // payload type -> lower-case MIME type
		apt := map[string]string{}  // rtx payload type -> the type it repairs
		for _, a := range m.Attributes {
			pt, rest, _ := strings.Cut(a.Value, " ")
			switch a.Key {
			case "rtpmap":
				name, _, _ := strings.Cut(rest, "/")
				mime[pt] = strings.ToLower(media + "/" + name)
			case "fmtp":
				for _, kv := range strings.Split(rest, ";") {
					if k, v, ok := strings.Cut(strings.TrimSpace(kv), "="); ok && k == "apt" {
						apt[pt] = v
					}
				}
			}
		}
		ok := func(pt string) bool {
			return slices.ContainsFunc(allowed, func(c string) bool { return strings.EqualFold(c, mime[pt]) })
		}
		keep := map[string]bool{}
		for _, pt := range m.MediaName.Formats {
			if ok(pt) {
				keep[pt] = true
			}
		}
		for _, pt := range m.MediaName.Formats {
			if strings.HasSuffix(mime[pt], "/rtx") && keep[apt[pt]] {
				keep[pt] = true
			}
		}
		var formats []string
		for _, pt := range m.MediaName.Formats {
			if keep[pt] {
				formats = append(formats, pt)
			}
		}
		if len(formats) == 0 {
			_, inactive := m.Attribute("inactive")
			_, recvonly := m.Attribute("recvonly")
			if inactive || recvonly {
				continue
			}
			return "", &protocol.Error{Code: protocol.CodeUnsupportedCodec,
				Reason: fmt.Sprintf("this room allows only %s; the offer's %s has none of them", strings.Join(allowed, ", "), media)}
		}
		m.MediaName.Formats = formats
		attrs := m.Attributes[:0]
		for _, a := range m.Attributes {
			if a.Key == "rtpmap" || a.Key == "fmtp" || a.Key == "rtcp-fb" {
				pt, _, _ := strings.Cut(a.Value, " ")
				if pt != "*" && !keep[pt] {
					continue
				}
			}
			attrs = append(attrs, a)
		}
		m.Attributes = attrs
	}
	b, err := sd.Marshal()
	if err != nil {
		return "", fmt.Errorf("write the filtered offer: %w", err)
	}
	return string(b), nil
}
