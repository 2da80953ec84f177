package auth

import (
	"fmt"
	"slices"
	"strings"
)

// Grant names, as tokens, room presets and the CLI write them.
const (
	GrantJoin      = "join"
	GrantPublish   = "publish" // every source; "publish:camera" and so on name one
	GrantSubscribe = "subscribe"
	GrantChat      = "chat"
	GrantRecord    = "record"
	GrantModerate  = "moderate"
	GrantAdmin     = "admin"
)

// Publish sources: what a participant may send. A camera stream's video is
// the camera, its audio the microphone; a screen share's video is the screen.
const (
	SourceCamera     = "camera"
	SourceMicrophone = "microphone"
	SourceScreen     = "screen"
)

// Sources lists the publish sources in their canonical order.
var Sources = []string{SourceCamera, SourceMicrophone, SourceScreen}

// Grants is what a participant may do in a room (and, with Admin, on the
// server). The zero value grants nothing.
type Grants struct {
	// Join lets the participant enter the room and see its events. Every other
	// participant grant implies it.
	Join bool
	// Camera, Microphone and Screen are the sources the participant may publish.
	Camera, Microphone, Screen bool
	// Subscribe lets the participant receive the room's streams.
	Subscribe bool
	// Chat lets the participant send messages.
	Chat bool
	// Record lets the participant start and stop the room's recording and
	// read that room's recordings.
	Record bool
	// Moderate lets the participant mute, remove and bar others, lock the
	// room and end it.
	Moderate bool
	// Admin is server-wide: every room's recordings, the metrics.
	Admin bool
}

// ParseGrants reads a list of grant names: "join", "publish" (every source) or
// "publish:SOURCE" (one), "subscribe", "chat", "record", "moderate", "admin".
// Unknown names are an error, so a typo never silently grants less (or more).
func ParseGrants(list []string) (Grants, error) {
	var g Grants
	for _, raw := range list {
		name := strings.ToLower(strings.TrimSpace(raw))
		switch name {
		case "":
			continue
		case GrantJoin:
			g.Join = true
		case GrantPublish:
			g.Camera, g.Microphone, g.Screen = true, true, true
		case GrantSubscribe:
			g.Subscribe = true
		case GrantChat:
			g.Chat = true
		case GrantRecord:
			g.Record = true
		case GrantModerate:
			g.Moderate = true
		case GrantAdmin:
			g.Admin = true
		default:
			src, ok := strings.CutPrefix(name, GrantPublish+":")
			if !ok {
				return Grants{}, fmt.Errorf("unknown grant %q (known: join, publish, publish:camera, publish:microphone, publish:screen, subscribe, chat, record, moderate, admin)", raw)
			}
			switch src {
			case SourceCamera:
				g.Camera = true
			case SourceMicrophone:
				g.Microphone = true
			case SourceScreen:
				g.Screen = true
			default:
				return Grants{}, fmt.Errorf("unknown publish source %q in grant %q (known: camera, microphone, screen)", src, raw)
			}
		}
	}
	return g.normal(), nil
}

// MustParseGrants is ParseGrants for lists known to be valid (tests, defaults).
func MustParseGrants(list ...string) Grants {
	g, err := ParseGrants(list)
	if err != nil {
		panic(err)
	}
	return g
}

// normal sets Join when any other participant grant is present.
func (g Grants) normal() Grants {
	if g.Camera || g.Microphone || g.Screen || g.Subscribe || g.Chat || g.Record || g.Moderate {
		g.Join = true
	}
	return g
}

// CanPublish reports whether the source (camera, microphone or screen) may be published.
func (g Grants) CanPublish(source string) bool {
	switch source {
	case SourceCamera:
		return g.Camera
	case SourceMicrophone:
		return g.Microphone
	case SourceScreen:
		return g.Screen
	}
	return false
}

// PublishesAny reports whether any source may be published.
func (g Grants) PublishesAny() bool { return g.Camera || g.Microphone || g.Screen }

// Union returns the grants of either.
func (g Grants) Union(o Grants) Grants {
	return Grants{Join: g.Join || o.Join, Camera: g.Camera || o.Camera, Microphone: g.Microphone || o.Microphone,
		Screen: g.Screen || o.Screen, Subscribe: g.Subscribe || o.Subscribe, Chat: g.Chat || o.Chat,
		Record: g.Record || o.Record, Moderate: g.Moderate || o.Moderate, Admin: g.Admin || o.Admin}
}

// Intersect returns the grants of both.
func (g Grants) Intersect(o Grants) Grants {
	return Grants{Join: g.Join && o.Join, Camera: g.Camera && o.Camera, Microphone: g.Microphone && o.Microphone,
		Screen: g.Screen && o.Screen, Subscribe: g.Subscribe && o.Subscribe, Chat: g.Chat && o.Chat,
		Record: g.Record && o.Record, Moderate: g.Moderate && o.Moderate, Admin: g.Admin && o.Admin}
}

// List returns the grants as names, in a canonical order: "publish" when all
// sources are granted, else "publish:SOURCE" for each.
func (g Grants) List() []string {
	var out []string
	if g.Join {
		out = append(out, GrantJoin)
	}
	if g.Camera && g.Microphone && g.Screen {
		out = append(out, GrantPublish)
	} else {
		for _, s := range Sources {
			if g.CanPublish(s) {
				out = append(out, GrantPublish+":"+s)
			}
		}
	}
	for _, x := range []struct {
		on   bool
		name string
	}{{g.Subscribe, GrantSubscribe}, {g.Chat, GrantChat}, {g.Record, GrantRecord}, {g.Moderate, GrantModerate}, {g.Admin, GrantAdmin}} {
		if x.on {
			out = append(out, x.name)
		}
	}
	return out
}

// String returns the grants as a comma-separated list.
func (g Grants) String() string {
	l := g.List()
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(slices.Clip(l), ",")
}
