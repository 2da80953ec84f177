package clips

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// MozchatINI is what ReadMozchatINI found in a mozchat thread's .ini.
type MozchatINI struct {
	// Settings are the media-message keys found, as a preset's clips block.
	Settings Settings
	// NotifyUsers is mozchat's notifyUsers: its notify.ini lists who to tell.
	NotifyUsers bool
	// Ignored lists the keys that have no Parley equivalent (polling,
	// folder names, ICE settings: Parley has its own).
	Ignored []string
}

// ReadMozchatINI reads a mozchat thread's .ini (PHP parse_ini_file syntax:
// [sections], key=value, "quoted" values, ; comments) into a preset's clips
// settings: maxBlobBytes, maxMediaFolderBytes, clipLifetimeSec,
// maxClipCount, allowVideo, videoOn, onRecorded ("stop" is the preview),
// maxClipSizeSec, notifyUsers. Other keys are listed in Ignored.
func ReadMozchatINI(r io.Reader) (MozchatINI, error) {
	var out MozchatINI
	err := readINI(r, func(line int, section, key, value string) error {
		bad := func(what string) error {
			return fmt.Errorf("line %d: %s=%q: %s", line, key, value, what)
		}
		integer := func() (int64, error) {
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil {
				return 0, bad("not a whole number")
			}
			return n, nil
		}
		s := &out.Settings
		switch key {
		case "maxBlobBytes", "maxMediaFolderBytes", "clipLifetimeSec":
			n, err := integer()
			if err != nil {
				return err
			}
			switch key {
			case "maxBlobBytes":
				s.MaxBlobBytes = &n
			case "maxMediaFolderBytes":
				s.MaxMediaFolderBytes = &n
			default:
				s.ClipLifetimeSec = &n
			}
		case "maxClipCount":
			n, err := integer()
			if err != nil {
				return err
			}
			c := int(n)
			s.MaxClipCount = &c
		case "maxClipSizeSec":
			f, err := strconv.ParseFloat(value, 64)
			if err != nil {
				return bad("not a number")
			}
			s.MaxClipSizeSec = &f
		case "allowVideo", "videoOn", "notifyUsers":
			b, err := iniBool(value)
			if err != nil {
				return bad(err.Error())
			}
			switch key {
			case "allowVideo":
				s.AllowVideo = &b
			case "videoOn":
				s.VideoOn = &b
			default:
				out.NotifyUsers = b
			}
		case "onRecorded":
			v, err := onRecorded(value)
			if err != nil {
				return fmt.Errorf("line %d: %w", line, err)
			}
			s.OnRecorded = &v
		default:
			out.Ignored = append(out.Ignored, key)
		}
		return nil
	})
	if err != nil {
		return MozchatINI{}, fmt.Errorf("mozchat .ini: %w", err)
	}
	return out, nil
}

// ReadMozchatNotify reads a mozchat notify.ini: user="address" lines.
func ReadMozchatNotify(r io.Reader) (map[string]string, error) {
	out := map[string]string{}
	err := readINI(r, func(line int, _, key, value string) error {
		if len(out) >= MaxNotify {
			return fmt.Errorf("line %d: more than %d addresses", line, MaxNotify)
		}
		out[key] = value
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mozchat notify.ini: %w", err)
	}
	return out, nil
}

// readINI calls fn with each key=value of an ini file, unquoted.
func readINI(r io.Reader, fn func(line int, section, key, value string) error) error {
	sc := bufio.NewScanner(io.LimitReader(r, 1<<20))
	section := ""
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if n == 1 {
			line = strings.TrimPrefix(line, "\ufeff")
		}
		if line == "" || line[0] == ';' || line[0] == '#' {
			continue
		}
		if line[0] == '[' {
			end := strings.IndexByte(line, ']')
			if end < 0 {
				return fmt.Errorf("line %d: a section without its ]", n)
			}
			section = strings.TrimSpace(line[1:end])
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return fmt.Errorf("line %d: expected key=value", n)
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if key == "" {
			return fmt.Errorf("line %d: an empty key", n)
		}
		if strings.HasPrefix(value, `"`) {
			// A quoted value runs to the last quote (mozchat's iceString
			// holds quotes inside); a comment may follow it.
			end := strings.LastIndexByte(value, '"')
			if end == 0 {
				return fmt.Errorf("line %d: %s: a quote that does not close", n, key)
			}
			value = value[1:end]
		} else if i := strings.IndexByte(value, ';'); i >= 0 {
			value = strings.TrimSpace(value[:i])
		}
		if err := fn(n, section, key, value); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return nil
}

// iniBool reads PHP's ini booleans.
func iniBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "1", "true", "on", "yes":
		return true, nil
	case "0", "false", "off", "no", "none", "":
		return false, nil
	}
	return false, fmt.Errorf("not a boolean (1/0, true/false, on/off, yes/no)")
}
