// The recording's place on the conference page: the REC badge, the link to this meeting's
// recording (the server signs one for everyone present while it records), and chat lines that
// say when and why a recording started or stopped.

// Why a recording stopped, for people (RECORDING STOPPED reasons).
const RECORDING_STOPPED = {
  QUOTA_DURATION: 'the meeting reached the longest recording this server allows',
  QUOTA_BYTES: 'the meeting reached the largest recording this server allows',
  DISK_LOW: 'the server is low on disk space',
};

/** showRecording shows a RECORDING event's info; say(text) writes a system line in the chat. */
export function showRecording(info, say) {
  const rec = document.getElementById('rec');
  if (rec && info.status === 'STOPPED') rec.hidden = true;
  const link = document.getElementById('recordingLink');
  if (link && info.url) {
    link.href = info.url;
    link.hidden = false;
    link.title = 'This meeting\'s recording: it can be watched there once the meeting is over and mixed' +
      (info.expires ? ' (link valid until ' + info.expires.toLocaleString() + ')' : '');
  }
  if (info.status === 'STARTED' && info.by) {
    if (rec) rec.hidden = false;
    say(`recording started by ${info.by}`);
  } else if (info.status === 'STARTED') {
    say('this meeting is recorded; the link "Your recording" opens it once the meeting is over');
  } else if (info.status === 'STOPPED' && info.by) {
    say(`recording stopped by ${info.by}`);
  } else if (info.status === 'STOPPED') {
    say('recording stopped: ' + (RECORDING_STOPPED[info.reason] || info.reason || 'stopped') +
      (info.url ? '; what was recorded stays available through "Your recording"' : ''));
  }
}

/** hideRecordingLink hides the last meeting's link (a new join). */
export function hideRecordingLink() {
  const link = document.getElementById('recordingLink');
  if (link) link.hidden = true;
}
