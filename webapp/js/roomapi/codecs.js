// Codecs and encodings: what this browser decodes (sent with join), the codec a publisher
// prefers, a camera's simulcast layers and a screen share's degradation preference.
// Part of roomapi.js, which re-exports decodableCodecs.

/**
 * The MIME types this page can decode, as sent in join.codecs; H.264 also once per profile it
 * decodes ("video/H264;profile-level-id=42e01f;packetization-mode=1"), so the server never sends
 * it a profile it cannot decode.
 */
export function decodableCodecs() {
  const out = [];
  if (typeof RTCRtpReceiver === 'undefined' || !RTCRtpReceiver.getCapabilities) return out;
  let h264 = 0;
  for (const kind of ['audio', 'video']) {
    const caps = RTCRtpReceiver.getCapabilities(kind);
    for (const c of (caps && caps.codecs) || []) {
      const sub = c.mimeType.split('/')[1]?.toLowerCase() || '';
      if (sub === 'rtx' || sub === 'red' || sub === 'ulpfec' || sub.startsWith('flexfec')) continue;
      if (!out.some((m) => m.toLowerCase() === c.mimeType.toLowerCase())) out.push(c.mimeType);
      const fmtp = c.sdpFmtpLine || '';
      const plid = /profile-level-id=([0-9a-fA-F]{6})/.exec(fmtp);
      if (sub === 'h264' && plid && h264 < 16) {
        const mode = /packetization-mode=(\d)/.exec(fmtp);
        const entry = `${c.mimeType};profile-level-id=${plid[1].toLowerCase()};packetization-mode=${mode ? mode[1] : 0}`;
        if (!out.includes(entry)) { out.push(entry); h264++; }
      }
    }
  }
  return out;
}

// preferCodec puts codec (VP8, VP9, H264, AV1) first in the transceiver's codec list.
export function preferCodec(transceiver, codec) {
  if (!codec || !transceiver.setCodecPreferences) return false;
  const mime = 'video/' + String(codec).toLowerCase();
  const sources = [
    () => RTCRtpSender.getCapabilities && RTCRtpSender.getCapabilities('video'),
    () => RTCRtpReceiver.getCapabilities && RTCRtpReceiver.getCapabilities('video'),
  ];
  for (const src of sources) {
    const caps = src();
    if (!caps || !caps.codecs) continue;
    const first = caps.codecs.filter((c) => c.mimeType.toLowerCase() === mime);
    if (!first.length) continue;
    try {
      transceiver.setCodecPreferences([...first, ...caps.codecs.filter((c) => c.mimeType.toLowerCase() !== mime)]);
      return true;
    } catch (e) { /* try the other capability list */ }
  }
  console.warn(`roomapi: codec ${codec} not available for sending here`);
  return false;
}

// SIMULCAST_LAYERS are a camera's layers, lowest first (named as the server expects: q, h, f):
// a quarter, half and the whole of the capture. Browsers leave out the layers a small capture has
// no room for (Chromium sends three from 960x540 up, two from 480x270).
const SIMULCAST_LAYERS = [
  {rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 100_000},
  {rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000},
  {rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_500_000},
];

// simulcastLayers are the layers a camera track is offered with: as many as the browser will send
// for its capture (three from 960x540 up, two from 480x270, one below), so that the top layer
// offered, the one the server records and taps, is the one that arrives; two layers are the half
// and the whole of the capture. One layer means no simulcast at all.
export function simulcastLayers(track) {
  const st = (track.getSettings && track.getSettings()) || {};
  const pixels = (st.width || 0) * (st.height || 0);
  if (pixels >= 960 * 540) return SIMULCAST_LAYERS.map((l) => ({...l}));
  if (pixels >= 480 * 270) return SIMULCAST_LAYERS.slice(1).map((l) => ({...l}));
  return [];
}

// simulcastCodec says whether a camera in codec is published as simulcast: VP8 and H.264 (the
// browser's default choice is one of them); VP9 and AV1 go as one layer.
export function simulcastCodec(codec) {
  return !codec || ['vp8', 'h264'].includes(String(codec).toLowerCase());
}

// scalabilityModes are the scalability modes a camera track in codec may be published with when it
// goes as one encoding (not simulcast), best first; the first the browser takes is used. VP9 and
// AV1 go with spatial and temporal layers, as many spatial layers as the capture has room for
// (three from 960x540 up, like simulcast's three layers; two from 480x270), in the _KEY structure:
// an upper spatial layer refers to the one below only at keyframes, so the server can send a
// receiver the lower layers alone (a smaller picture for a small tile or a weak link) and the
// stream stays decodable; and three temporal layers, so a receiver whose link is short of even the
// lowest spatial layer gets a lower frame rate before its video pauses. The server reads VP9's
// layers from its payload descriptor, AV1's from the dependency descriptor header extension.
export function scalabilityModes(codec, track) {
  if (!['vp9', 'av1'].includes(String(codec || '').toLowerCase())) return [];
  const st = (track && track.getSettings && track.getSettings()) || {};
  const pixels = (st.width || 0) * (st.height || 0);
  if (pixels >= 960 * 540) return ['L3T3_KEY', 'L1T3'];
  if (pixels >= 480 * 270) return ['L2T3_KEY', 'L1T3'];
  return ['L1T3'];
}

// keepResolution makes a screen share's sender lower its frame rate, not its resolution, when the
// link or the CPU is short.
export function keepResolution(sender) {
  if (!sender || !sender.getParameters || !sender.setParameters) return;
  try {
    const params = sender.getParameters();
    params.degradationPreference = 'maintain-resolution';
    sender.setParameters(params).catch(() => {});
  } catch { /* not supported: the default */ }
}
