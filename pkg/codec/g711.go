package codec

// EncodeULaw encodes a 16-bit linear sample as G.711 µ-law.
func EncodeULaw(v int16) byte {
	const bias, clip = 0x84, 32635
	sign := byte(0)
	x := int(v)
	if x < 0 {
		x, sign = -x, 0x80
	}
	if x > clip {
		x = clip
	}
	x += bias
	exp := 7
	for mask := 0x4000; x&mask == 0 && exp > 0; mask >>= 1 {
		exp--
	}
	mant := (x >> (exp + 3)) & 0x0f
	return ^(sign | byte(exp<<4) | byte(mant))
}

// EncodeALaw encodes a 16-bit linear sample as G.711 A-law.
func EncodeALaw(v int16) byte {
	sign := byte(0x80)
	x := int(v) >> 3 // 13-bit magnitude
	if x < 0 {
		x, sign = -x-1, 0
	}
	var b byte
	if x < 32 {
		b = byte(x >> 1)
	} else {
		exp := 1
		for y := x >> 5; y > 1; y >>= 1 {
			exp++
		}
		b = byte(exp<<4) | byte((x>>exp)&0x0f)
	}
	return (b | sign) ^ 0x55
}
