//! Round trips of every frame through its JSON form, and the rules around them.

use super::*;
use crate::{ErrorCode, MsgId};
use serde_json::json;

fn round_trip_client(frame: ClientFrame, expected: serde_json::Value) {
    assert_eq!(serde_json::to_value(&frame).unwrap(), expected);
    let back: ClientFrame = serde_json::from_value(expected).unwrap();
    assert_eq!(back, frame);
}

fn round_trip_server(frame: ServerFrame, expected: serde_json::Value) {
    assert_eq!(serde_json::to_value(&frame).unwrap(), expected);
    let back: ServerFrame = serde_json::from_value(expected).unwrap();
    assert_eq!(back, frame);
}

#[test]
fn client_frames_round_trip() {
    round_trip_client(
        ClientFrame::Hello {
            version: 1,
            agent: None,
        },
        json!({"type": "hello", "version": 1}),
    );
    round_trip_client(
        ClientFrame::Login(LoginRequest {
            id: 1,
            user: "hans".into(),
            password: "falcon*solo".into(),
            peer_port: Some(4000),
            peer_key: Some(crate::peer::PeerKey::new([0xab; 32])),
            device: None,
        }),
        json!({"type": "login", "id": 1, "user": "hans", "password": "falcon*solo", "peer_port": 4000, "peer_key": "ab".repeat(32)}),
    );
    round_trip_client(
        ClientFrame::Register(LoginRequest {
            id: 2,
            user: "rey".into(),
            password: "jakku".into(),
            peer_port: None,
            peer_key: None,
            device: None,
        }),
        json!({"type": "register", "id": 2, "user": "rey", "password": "jakku"}),
    );
    round_trip_client(
        ClientFrame::Send(SendRequest {
            id: 3,
            to: "luke".into(),
            text: "hi".into(),
            client_id: None,
        }),
        json!({"type": "send", "id": 3, "to": "luke", "text": "hi"}),
    );
    round_trip_client(
        ClientFrame::Send(SendRequest {
            id: 3,
            to: "luke".into(),
            text: "hi".into(),
            client_id: Some("c-1".into()),
        }),
        json!({"type": "send", "id": 3, "to": "luke", "text": "hi", "client_id": "c-1"}),
    );
    round_trip_client(
        ClientFrame::Broadcast(BroadcastRequest {
            id: 4,
            text: "all".into(),
        }),
        json!({"type": "broadcast", "id": 4, "text": "all"}),
    );
    round_trip_client(ClientFrame::Who { id: 5 }, json!({"type": "who", "id": 5}));
    round_trip_client(
        ClientFrame::WhoSince(WhoSinceRequest { id: 6, secs: 30 }),
        json!({"type": "who_since", "id": 6, "secs": 30}),
    );
    round_trip_client(
        ClientFrame::Block(UserRequest {
            id: 7,
            user: "vader".into(),
        }),
        json!({"type": "block", "id": 7, "user": "vader"}),
    );
    round_trip_client(
        ClientFrame::Unblock(UserRequest {
            id: 8,
            user: "vader".into(),
        }),
        json!({"type": "unblock", "id": 8, "user": "vader"}),
    );
    round_trip_client(
        ClientFrame::Logout {
            id: 9,
            revoke_device: false,
        },
        json!({"type": "logout", "id": 9}),
    );
    round_trip_client(ClientFrame::Ping, json!({"type": "ping"}));
    round_trip_client(
        ClientFrame::Ack {
            msg_id: MsgId::new(0, 0x77),
        },
        json!({"type": "ack", "msg_id": "a0000000000000000000000000000077"}),
    );
    round_trip_client(ClientFrame::Activity, json!({"type": "activity"}));
    round_trip_client(
        ClientFrame::PrivateRequest(UserRequest {
            id: 10,
            user: "luke".into(),
        }),
        json!({"type": "private_request", "id": 10, "user": "luke"}),
    );
    round_trip_client(
        ClientFrame::PrivateAccept(UserRequest {
            id: 11,
            user: "hans".into(),
        }),
        json!({"type": "private_accept", "id": 11, "user": "hans"}),
    );
    round_trip_client(
        ClientFrame::PrivateDecline(UserRequest {
            id: 12,
            user: "hans".into(),
        }),
        json!({"type": "private_decline", "id": 12, "user": "hans"}),
    );
    round_trip_client(
        ClientFrame::PrivateEnd(UserRequest {
            id: 13,
            user: "hans".into(),
        }),
        json!({"type": "private_end", "id": 13, "user": "hans"}),
    );
}

#[test]
fn server_frames_round_trip() {
    round_trip_server(
        ServerFrame::Hello {
            version: 1,
            server: "msg-server 0.1.0".into(),
        },
        json!({"type": "hello", "version": 1, "server": "msg-server 0.1.0"}),
    );
    round_trip_server(
        ServerFrame::Welcome {
            id: 1,
            user: "hans".into(),
            message: "Welcome".into(),
            token: None,
        },
        json!({"type": "welcome", "id": 1, "user": "hans", "message": "Welcome"}),
    );
    round_trip_server(ServerFrame::ok(2, None), json!({"type": "ok", "id": 2}));
    round_trip_server(
        ServerFrame::ok(2, Some("vader is blocked".into())),
        json!({"type": "ok", "id": 2, "message": "vader is blocked"}),
    );
    round_trip_server(
        ServerFrame::Sent {
            id: 3,
            msg_id: MsgId::legacy(9),
            queued: true,
        },
        json!({"type": "sent", "id": 3, "msg_id": "9", "queued": true}),
    );
    round_trip_server(
        ServerFrame::Users {
            id: 4,
            users: vec!["luke".into(), "yoda".into()],
        },
        json!({"type": "users", "id": 4, "users": ["luke", "yoda"]}),
    );
    round_trip_server(
        ServerFrame::error(Some(5), ErrorCode::InvalidUser, "Error. Invalid user"),
        json!({"type": "error", "id": 5, "code": "invalid_user", "message": "Error. Invalid user"}),
    );
    round_trip_server(
        ServerFrame::error(None, ErrorCode::InvalidCommand, "Error. Invalid command"),
        json!({"type": "error", "code": "invalid_command", "message": "Error. Invalid command"}),
    );
    round_trip_server(
        ServerFrame::Message {
            msg_id: MsgId::new(u64::MAX, 6),
            from: "hans".into(),
            text: "hi".into(),
            at: 1700,
            client_id: Some("c-9".into()),
        },
        json!({"type": "message", "msg_id": "dfffffffffffffff0000000000000006", "from": "hans", "text": "hi", "at": 1700, "client_id": "c-9"}),
    );
    round_trip_server(
        ServerFrame::Broadcast {
            from: "hans".into(),
            text: "all".into(),
            at: 1,
        },
        json!({"type": "broadcast", "from": "hans", "text": "all", "at": 1}),
    );
    round_trip_server(
        ServerFrame::Presence {
            user: "luke".into(),
            online: false,
            at: 2,
        },
        json!({"type": "presence", "user": "luke", "online": false, "at": 2}),
    );
    round_trip_server(
        ServerFrame::PresenceBatch {
            events: vec![
                PresenceEvent("luke".into(), true, 2),
                PresenceEvent("leia".into(), false, 3),
            ],
        },
        json!({"type": "presence_batch", "events": [["luke", true, 2], ["leia", false, 3]]}),
    );
    round_trip_server(
        ServerFrame::LoggedOut {
            reason: LogoutReason::Timeout,
            message: "You have been logged out due to inactivity".into(),
        },
        json!({"type": "logged_out", "reason": "timeout", "message": "You have been logged out due to inactivity"}),
    );
    round_trip_server(
        ServerFrame::PrivateRequest {
            from: "hans".into(),
            at: 3,
        },
        json!({"type": "private_request", "from": "hans", "at": 3}),
    );
    round_trip_server(
        ServerFrame::PrivateReady {
            peer: "luke".into(),
            token: "abc".into(),
            peer_key: Some("cd".repeat(32)),
            addr: Some("127.0.0.1:4000".into()),
            caller_ip: None,
            expires_in: 60,
        },
        json!({"type": "private_ready", "peer": "luke", "token": "abc", "peer_key": "cd".repeat(32), "addr": "127.0.0.1:4000", "expires_in": 60}),
    );
    round_trip_server(
        ServerFrame::PrivateReady {
            peer: "hans".into(),
            token: "abc".into(),
            peer_key: None,
            addr: None,
            caller_ip: Some("::1".into()),
            expires_in: 60,
        },
        json!({"type": "private_ready", "peer": "hans", "token": "abc", "caller_ip": "::1", "expires_in": 60}),
    );
    round_trip_server(
        ServerFrame::refusal(
            Some(4),
            crate::Refusal::new(ErrorCode::LoginBlocked, "blocked").retry_after(42),
        ),
        json!({"type": "error", "id": 4, "code": "login_blocked", "message": "blocked", "retry_after": 42}),
    );
    round_trip_server(
        ServerFrame::PrivateDeclined {
            peer: "luke".into(),
        },
        json!({"type": "private_declined", "peer": "luke"}),
    );
    round_trip_server(
        ServerFrame::PrivateExpired {
            peer: "luke".into(),
        },
        json!({"type": "private_expired", "peer": "luke"}),
    );
    round_trip_server(
        ServerFrame::PrivateEnded {
            peer: "luke".into(),
            reason: PrivateEndReason::LoggedOut,
        },
        json!({"type": "private_ended", "peer": "luke", "reason": "logged_out"}),
    );
    round_trip_server(ServerFrame::Pong, json!({"type": "pong"}));
}

#[test]
fn passwords_never_show_in_debug_output() {
    let frame = ClientFrame::Login(LoginRequest {
        id: 1,
        user: "hans".into(),
        password: "falcon*solo".into(),
        peer_port: None,
        peer_key: None,
        device: None,
    });
    let debug = format!("{frame:?}");
    assert!(!debug.contains("falcon"), "{debug}");
    assert!(debug.contains("hans"));
}

#[test]
fn unknown_fields_are_ignored_and_unknown_reasons_tolerated() {
    let frame: ServerFrame = serde_json::from_value(
        json!({"type": "logged_out", "reason": "moon_phase", "message": "bye", "extra": 1}),
    )
    .unwrap();
    assert_eq!(
        frame,
        ServerFrame::LoggedOut {
            reason: LogoutReason::Unknown,
            message: "bye".into()
        }
    );
}

#[test]
fn keepalives_and_acks_are_not_activity() {
    assert!(!ClientFrame::Ping.is_user_activity());
    assert!(
        !ClientFrame::Ack {
            msg_id: MsgId::legacy(1)
        }
        .is_user_activity()
    );
    assert!(ClientFrame::Activity.is_user_activity());
    assert!(ClientFrame::Who { id: 1 }.is_user_activity());
    assert_eq!(ClientFrame::Who { id: 7 }.request_id(), Some(7));
    assert_eq!(ClientFrame::Ping.request_id(), None);
}

#[test]
fn request_ids_are_found_on_replies_only() {
    assert_eq!(ServerFrame::ok(4, None).request_id(), Some(4));
    assert_eq!(ServerFrame::Pong.request_id(), None);
    assert_eq!(
        ServerFrame::error(None, ErrorCode::InvalidCommand, "x").request_id(),
        None
    );
}
