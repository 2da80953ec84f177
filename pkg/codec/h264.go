package codec

// AppendAnnexBNALs appends the NAL units of an H.264 Annex-B buffer (without
// their start codes) to out and returns it; the units alias b. Zero bytes
// before a start code (a 4-byte start code's first byte, trailing_zero_8bits)
// belong to no unit: a NAL unit never ends with a zero byte (H.264 7.4.1),
// and nothing but zeros between two start codes is no unit.
func AppendAnnexBNALs(out [][]byte, b []byte) [][]byte {
	start := -1
	unit := func(end int) {
		for end > start && b[end-1] == 0 {
			end--
		}
		if end > start {
			out = append(out, b[start:end])
		}
	}
	i := 0
	for i+2 < len(b) {
		if b[i] == 0 && b[i+1] == 0 && b[i+2] == 1 {
			if start >= 0 {
				unit(i)
			}
			i += 3
			start = i
			continue
		}
		i++
	}
	if start >= 0 {
		unit(len(b))
	}
	return out
}
