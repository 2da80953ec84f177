// The only line that differs from the page as written for Flashphoner's Web SDK, which defined the
// global Flashphoner with <script src="flashphoner.js">:
import {Flashphoner} from '/js/roomapi.js';

var SESSION_STATUS = Flashphoner.constants.SESSION_STATUS;
var STREAM_STATUS = Flashphoner.constants.STREAM_STATUS;
var ROOM_EVENT = Flashphoner.roomApi.events;
var _participants = 2; // other participants this page has displays for
var connection;
var room;

function init_page() {
    Flashphoner.init({});
    field('url', setURL());
    byId('joinBtn').onclick = function () {
        this.disabled = true;
        if (this.textContent === 'Join') {
            connect();
        } else {
            leave();
        }
    };
    byId('sendMessageBtn').onclick = sendMessage;
}

function connect() {
    var url = field('url');
    var username = field('login');
    byId('failedInfo').textContent = '';
    connection = Flashphoner.roomApi.connect({urlServer: url, username: username}).on(SESSION_STATUS.FAILED, function (session) {
        setStatus(session.status());
        onLeft();
    }).on(SESSION_STATUS.DISCONNECTED, function (session) {
        setStatus(session.status());
        onLeft();
    }).on(SESSION_STATUS.ESTABLISHED, function (session) {
        setStatus(session.status());
        joinRoom();
    });
}

function joinRoom() {
    connection.join({name: getRoomName()}).on(ROOM_EVENT.STATE, function (r) {
        room = r;
        var participants = room.getParticipants();
        if (participants.length > _participants) {
            byId('failedInfo').textContent = 'Current room is full';
            leave();
            return;
        }
        setInviteAddress(room.name());
        if (participants.length > 0) {
            var chatState = 'participants: ';
            for (var i = 0; i < participants.length; i++) {
                installParticipant(participants[i]);
                chatState += participants[i].name();
                if (i !== participants.length - 1) {
                    chatState += ',';
                }
            }
            addMessage('chat', chatState);
        } else {
            addMessage('chat', ' room is empty');
        }
        publishLocalMedia(room);
        onJoined(room);
    }).on(ROOM_EVENT.JOINED, function (participant) {
        installParticipant(participant);
        addMessage(participant.name(), 'joined');
    }).on(ROOM_EVENT.LEFT, function (participant) {
        removeParticipant(participant);
        addMessage(participant.name(), 'left');
    }).on(ROOM_EVENT.PUBLISHED, function (participant) {
        playParticipantsStream(participant);
    }).on(ROOM_EVENT.FAILED, function (r, info) {
        connection.disconnect();
        byId('failedInfo').textContent = info;
    }).on(ROOM_EVENT.MESSAGE, function (message) {
        addMessage(message.from.name(), message.text);
    });
}

function publishLocalMedia(room) {
    var constraints = {audio: true, video: true};
    var display = document.getElementById('localDisplay');
    room.publish({display: display, constraints: constraints, record: false, receiveVideo: false, receiveAudio: false})
        .on(STREAM_STATUS.FAILED, function (stream) {
            setStreamStatus(stream.status());
            byId('localStopBtn').disabled = true;
        }).on(STREAM_STATUS.PUBLISHING, function (stream) {
            setStreamStatus(stream.status());
            var control = byId('localStopBtn');
            control.disabled = false;
            control.onclick = function () {
                control.disabled = true;
                stream.stop();
            };
        }).on(STREAM_STATUS.UNPUBLISHED, function (stream) {
            setStreamStatus(stream.status());
            byId('localStopBtn').disabled = true;
        });
}

function installParticipant(participant) {
    var names = document.querySelectorAll('[id$=Name]');
    for (var i = 0; i < names.length; i++) {
        if (names[i].textContent === participant.name()) {
            return; // already shown (STATE after a reconnect)
        }
    }
    for (var j = 0; j < names.length; j++) {
        if (names[j].textContent === 'NONE') {
            var p = names[j].id.replace('Name', '');
            names[j].textContent = participant.name();
            participant.play(document.getElementById(p + 'Display'));
            return;
        }
    }
    console.warn('More than ' + _participants + ' participants, ignore participant ' + participant.name());
}

function removeParticipant(participant) {
    var names = document.querySelectorAll('[id$=Name]');
    for (var i = 0; i < names.length; i++) {
        if (names[i].textContent === participant.name()) {
            names[i].textContent = 'NONE';
        }
    }
}

function playParticipantsStream(participant) {
    var names = document.querySelectorAll('[id$=Name]');
    for (var i = 0; i < names.length; i++) {
        if (names[i].textContent === participant.name()) {
            var p = names[i].id.replace('Name', '');
            participant.play(document.getElementById(p + 'Display'));
        }
    }
}

function sendMessage() {
    var message = field('message');
    addMessage(field('login'), message);
    field('message', '');
    // Flashphoner's example sends the text to each participant.
    var participants = room.getParticipants();
    for (var i = 0; i < participants.length; i++) {
        participants[i].sendMessage(message);
    }
}

function leave() {
    if (room) {
        room.leave().then(onLeft, onLeft);
    } else {
        onLeft();
    }
}

function onJoined(room) {
    var btn = byId('joinBtn');
    btn.textContent = 'Leave';
    btn.disabled = false;
    byId('sendMessageBtn').disabled = false;
}

function onLeft() {
    var names = document.querySelectorAll('[id$=Name]');
    for (var i = 0; i < names.length; i++) {
        names[i].textContent = 'NONE';
    }
    room = null;
    var btn = byId('joinBtn');
    btn.textContent = 'Join';
    btn.disabled = false;
    byId('sendMessageBtn').disabled = true;
    byId('localStopBtn').disabled = true;
}

function addMessage(login, message) {
    var date = new Date();
    var time = date.getHours() + ':' + (date.getMinutes() < 10 ? '0' : '') + date.getMinutes();
    var line = document.createElement('div');
    line.className = 'chat-line';
    line.textContent = time + ' ' + login + ' - ' + message;
    var chat = byId('chat');
    chat.appendChild(line);
    chat.scrollTop = chat.scrollHeight;
}

function getRoomName() {
    var name = new URLSearchParams(location.search).get('roomName');
    if (name) {
        return name;
    }
    return 'room-' + Math.random().toString(36).slice(2, 8);
}

function setURL() {
    return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
}

function setInviteAddress(name) {
    byId('inviteAddress').textContent = location.href.split('?')[0] + '?roomName=' + name;
}

function setStatus(status) {
    var s = byId('status');
    s.textContent = status;
    s.className = status === SESSION_STATUS.ESTABLISHED ? 'text-success' : 'text-danger';
}

function setStreamStatus(status) {
    var s = byId('localStatus');
    s.textContent = status;
    s.className = status === STREAM_STATUS.FAILED ? 'text-danger' : 'text-success';
}

function byId(id) {
    return document.getElementById(id);
}

function field(id, value) {
    if (value !== undefined) {
        byId(id).value = value;
    }
    return byId(id).value;
}

init_page();
