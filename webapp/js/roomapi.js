// Parley Room API: the browser side of docs/protocol.md, shaped like Flashphoner's Room API.
//
//   import RoomApi, {SESSION_STATUS, ROOM_EVENT, STREAM_STATUS} from './roomapi.js';
//   const connection = RoomApi.connect({urlServer: 'wss://host/ws', username: 'alice', token})
//     .on(SESSION_STATUS.ESTABLISHED, () => {
//       const room = connection.join({name: 'standup'})
//         .on(ROOM_EVENT.STATE, room => room.publish({}))
//         .on(ROOM_EVENT.PUBLISHED, (participant, stream) => stream.play(videoElement));
//     });
//
// docs/roomapi.md is the reference. Plain ES module, no dependencies.
//
// This file is the one import for pages; the API lives in roomapi/ in parts that meet only
// through small seams (each file says which):
//   roomapi/connection.js  the session: WebSocket, requests, reconnect and resume
//   roomapi/room.js        Room and Participant: events, chat, moderation, presence
//   roomapi/streams.js     LocalStream (publish) and RemoteStream (play)
//   roomapi/tiles.js       the tile watcher (how big each remote video shows)
//   roomapi/codecs.js      decodable codecs, codec preference, simulcast layers
//   roomapi/events.js, util.js, resume.js  names, the error type, resume tokens
// clipapi.js holds the media messages (clips) a Room posts and lists.

import {ClipError, Clip} from './clipapi.js';
import {SESSION_STATUS, ROOM_EVENT, STREAM_STATUS, CONNECTION_EVENT} from './roomapi/events.js';
import {RoomApiError} from './roomapi/util.js';
import {storedResumeToken} from './roomapi/resume.js';
import {decodableCodecs} from './roomapi/codecs.js';
import {connect} from './roomapi/connection.js';

export {ClipError, Clip};
export {SESSION_STATUS, ROOM_EVENT, STREAM_STATUS, CONNECTION_EVENT};
export {RoomApiError, storedResumeToken, decodableCodecs, connect};

export const RoomApi = {
  connect,
  SESSION_STATUS,
  ROOM_EVENT,
  STREAM_STATUS,
  CONNECTION_EVENT,
  RoomApiError,
  ClipError,
  decodableCodecs,
  storedResumeToken,
  // Flashphoner's name for ROOM_EVENT (Flashphoner.roomApi.events, RoomApi.events).
  events: ROOM_EVENT,
};

/**
 * Flashphoner is the part of Flashphoner's Web SDK global that room pages use, so that a page
 * written for Flashphoner runs with its script tag replaced by
 * `import {Flashphoner} from '/js/roomapi.js';`: `Flashphoner.init()` (nothing to do here),
 * `Flashphoner.constants.SESSION_STATUS` / `STREAM_STATUS`, and `Flashphoner.roomApi` (this API,
 * also reachable as `RoomApi.sdk`, as in Flashphoner's flashphoner-room-api.js).
 */
export const Flashphoner = Object.freeze({
  init() {},
  constants: Object.freeze({SESSION_STATUS, STREAM_STATUS}),
  roomApi: RoomApi,
});
RoomApi.sdk = Flashphoner;
Object.freeze(RoomApi);

export default RoomApi;
