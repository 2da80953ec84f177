// The Room API's event and status names (docs/roomapi.md). Part of roomapi.js, which re-exports them.

export const SESSION_STATUS = Object.freeze({
  ESTABLISHED: 'ESTABLISHED',
  FAILED: 'FAILED',
  DISCONNECTED: 'DISCONNECTED',
});

export const ROOM_EVENT = Object.freeze({
  STATE: 'STATE',
  JOINED: 'JOINED',
  LEFT: 'LEFT',
  PUBLISHED: 'PUBLISHED',
  UNPUBLISHED: 'UNPUBLISHED',
  MESSAGE: 'MESSAGE',
  FAILED: 'FAILED',
  // Parley extension: a remote stream's status for this client changed (PLAYING, STOPPED, FAILED).
  STREAM_STATUS: 'STREAM_STATUS',
  // Parley extensions, moderation (docs/protocol.md): everyone gets each, with info.by the moderator.
  MUTED: 'MUTED',
  UNMUTED: 'UNMUTED',
  REMOVED: 'REMOVED',
  LOCKED: 'LOCKED',
  UNLOCKED: 'UNLOCKED',
  ENDED: 'ENDED',
  // Parley extension: the room session's recording started (with a link to it) or a limit stopped it.
  RECORDING: 'RECORDING',
  // Parley extensions, webinar rooms: the number of viewers (at most once a second); a moderator
  // brought a participant on stage or back; the live ended (with its replay, then the session ends).
  VIEWERS: 'VIEWERS',
  STAGED: 'STAGED',
  UNSTAGED: 'UNSTAGED',
  LIVE_ENDED: 'LIVE_ENDED',
  // Parley extension: a participant raised or lowered its hand or turned its own microphone or
  // camera off or on: (participant, {hand, micOff, camOff}).
  PRESENCE: 'PRESENCE',
  // Parley extension: media messages (clipapi.js): a clip posted to the room, one deleted or expired.
  CLIP_ADDED: 'CLIP_ADDED',
  CLIP_DELETED: 'CLIP_DELETED',
  // Parley extension: how this client receives a remote stream, from its own receiver reports
  // (every few seconds): handler(participant, stream, stream.quality()).
  QUALITY: 'QUALITY',
  // Parley extension: who speaks changed: info.dominant (the dominant speaker, or null) and
  // info.speakers (everyone speaking now, dominant first), each {name, streamId, level, self}.
  ACTIVE_SPEAKERS: 'ACTIVE_SPEAKERS',
});

export const STREAM_STATUS = Object.freeze({
  PUBLISHING: 'PUBLISHING',
  UNPUBLISHED: 'UNPUBLISHED',
  PLAYING: 'PLAYING',
  STOPPED: 'STOPPED',
  FAILED: 'FAILED',
});

// Connection event for server errors (with or without a request id), besides the SESSION_STATUS ones.
export const CONNECTION_EVENT = Object.freeze({ERROR: 'ERROR'});
