//! The sandbox answers like Meta: checked against the real client over loopback HTTP.

use pinglayer_sandbox::{Sandbox, SandboxConfig, SandboxNumber};
use pinglayer_whatsapp::{
    Client, ClientConfig, ClientError,
    types::{
        ComponentParameters, Content, Language, Parameter, SendMessage, Template, TemplateCreate,
        Text,
    },
};
use serde_json::json;
use std::time::Duration;

async fn start(
    cfg: SandboxConfig,
) -> (
    Client,
    std::sync::Arc<pinglayer_sandbox::SandboxState>,
    tokio::sync::oneshot::Sender<()>,
) {
    let sb = Sandbox::build(cfg, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client = Client::new(ClientConfig {
        base_url: format!("http://{}", sb.local_addr()),
        ..Default::default()
    })
    .unwrap();
    let state = sb.state();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(sb.run_until(async {
        let _ = rx.await;
    }));
    (client, state, tx)
}

fn text(to: &str) -> SendMessage {
    SendMessage::new(
        to,
        Content::Text {
            text: Text {
                body: "hi".into(),
                preview_url: None,
            },
        },
    )
}

fn code(r: Result<impl std::fmt::Debug, ClientError>) -> i64 {
    r.expect_err("an error").code().expect("a Graph error")
}

const PNID: &str = "100000000000001";
const TOKEN: &str = "sandbox-access-token";

#[tokio::test]
async fn tokens_numbers_and_throughput() {
    let (c, state, _stop) = start(SandboxConfig {
        numbers: vec![SandboxNumber {
            throughput_per_second: 5,
            ..Default::default()
        }],
        pair_limit: false,
        ..Default::default()
    })
    .await;
    assert_eq!(
        code(c.send(PNID, "wrong-token", &text("919812345678")).await),
        190
    );
    assert_eq!(code(c.send("999", TOKEN, &text("919812345678")).await), 100);
    assert_eq!(code(c.send(PNID, TOKEN, &text("12")).await), 100);
    let r = c.send(PNID, TOKEN, &text("+91 98123 45678")).await.unwrap();
    assert_eq!(r.contacts[0].wa_id, "919812345678");
    assert!(r.messages[0].id.starts_with("wamid."));
    let mut throttled = 0;
    for i in 0..20 {
        if let Err(e) = c
            .send(PNID, TOKEN, &text(&format!("9198123456{i:02}")))
            .await
        {
            assert_eq!(e.code(), Some(130429));
            assert!(matches!(
                e.action(),
                pinglayer_whatsapp::ErrorAction::RetryLater { .. }
            ));
            throttled += 1;
        }
    }
    assert!(
        throttled >= 10,
        "5/s: most of 20 immediate sends are refused ({throttled})"
    );
    assert_eq!(state.sent.lock().unwrap().len(), 21 - throttled);
}

#[tokio::test]
async fn pair_rate_limit() {
    let (c, _state, _stop) = start(SandboxConfig {
        numbers: vec![SandboxNumber {
            throughput_per_second: 1000,
            ..Default::default()
        }],
        ..Default::default()
    })
    .await;
    let mut first_refusal = None;
    for i in 0..60 {
        if let Err(e) = c.send(PNID, TOKEN, &text("919812345678")).await {
            assert_eq!(e.code(), Some(131056));
            first_refusal.get_or_insert(i);
        }
    }
    assert_eq!(
        first_refusal,
        Some(45),
        "a burst of 45 to one person, then 131056"
    );
    c.send(PNID, TOKEN, &text("919812345679"))
        .await
        .expect("other recipients are unaffected");
}

#[tokio::test]
async fn templates_must_be_approved_and_filled() {
    let (c, _state, _stop) = start(SandboxConfig {
        template_review: Duration::from_millis(10),
        ..Default::default()
    })
    .await;
    let created = c
        .create_template(
            "200000000000001",
            TOKEN,
            &TemplateCreate {
                name: "order_update".into(),
                language: "en".into(),
                category: "UTILITY".into(),
                parameter_format: None,
                components: vec![json!({"type": "BODY", "text": "Hi {{1}}, order {{2}}"})],
            },
        )
        .await
        .unwrap();
    assert_eq!(created.status, "PENDING");
    let send = |params: Vec<Parameter>, lang: &str| {
        SendMessage::new(
            "919812345678",
            Content::Template {
                template: Template {
                    name: "order_update".into(),
                    language: Language {
                        code: lang.into(),
                        policy: None,
                    },
                    components: vec![ComponentParameters {
                        kind: "body".into(),
                        sub_type: None,
                        index: None,
                        parameters: params,
                    }],
                },
            },
        )
    };
    let two = vec![Parameter::text("Asha"), Parameter::text("#1")];
    assert_eq!(
        code(c.send(PNID, TOKEN, &send(two.clone(), "en")).await),
        132001,
        "pending"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = c.send(PNID, TOKEN, &send(two.clone(), "en")).await.unwrap();
    assert_eq!(r.messages[0].message_status.as_deref(), Some("accepted"));
    assert_eq!(
        code(
            c.send(PNID, TOKEN, &send(vec![Parameter::text("Asha")], "en"))
                .await
        ),
        132000
    );
    assert_eq!(
        code(c.send(PNID, TOKEN, &send(two, "en_US")).await),
        132001,
        "language must match"
    );
    let listed = c.all_templates("200000000000001", TOKEN).await.unwrap();
    assert_eq!(listed[0].status, "APPROVED");
}
