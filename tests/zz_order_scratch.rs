mod common;
use common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use prechat_enricher::queue::headers::json_properties;
use prechat_enricher::startup::Roles;

async fn fill(app: &TestApp, q: &str, n: usize) {
    let ch = app.broker.channel().await.unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    for i in 0..n {
        ch.basic_publish(
            "".into(),
            q.into(),
            Default::default(),
            b"{}",
            json_properties(&format!("{i:03}"), FieldTable::default()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
}
async fn read(app: &TestApp, q: &str, mode: &str) -> Vec<String> {
    let ch = app.broker.channel().await.unwrap();
    let mut ids = vec![];
    let mut tags = vec![];
    while let Some(m) = ch
        .basic_get(q.into(), BasicGetOptions::default())
        .await
        .unwrap()
    {
        ids.push(
            m.delivery
                .properties
                .message_id()
                .as_ref()
                .unwrap()
                .to_string(),
        );
        tags.push(m.delivery.delivery_tag);
    }
    match mode {
        "multiple" => ch
            .basic_nack(
                *tags.last().unwrap(),
                BasicNackOptions {
                    multiple: true,
                    requeue: true,
                },
            )
            .await
            .unwrap(),
        "each" => {
            for t in &tags {
                ch.basic_nack(
                    *t,
                    BasicNackOptions {
                        multiple: false,
                        requeue: true,
                    },
                )
                .await
                .unwrap()
            }
        }
        "reject_each" => {
            for t in &tags {
                ch.basic_reject(*t, BasicRejectOptions { requeue: true })
                    .await
                    .unwrap()
            }
        }
        m if m.starts_with("win") => {
            let w: usize = m[3..].parse().unwrap();
            let t0 = std::time::Instant::now();
            for (i, t) in tags.iter().enumerate() {
                ch.basic_reject(*t, BasicRejectOptions { requeue: true })
                    .await
                    .unwrap();
                if (i + 1) % w == 0 {
                    ch.basic_qos(0, BasicQosOptions::default()).await.unwrap();
                }
            }
            eprintln!("{m}: release took {:?}", t0.elapsed());
        }
        m if m.starts_with("count") => {
            let w: usize = m[5..].parse().unwrap();
            let t0 = std::time::Instant::now();
            let count = |ch: lapin::Channel| { let q = q.to_string(); async move { ch.queue_declare(q.as_str().into(), QueueDeclareOptions { passive: true, ..Default::default() }, FieldTable::default()).await.unwrap().message_count() } };
            let base = count(ch.clone()).await as usize;
            let mut polls = 0;
            for (i, t) in tags.iter().enumerate() {
                ch.basic_reject(*t, BasicRejectOptions { requeue: true }).await.unwrap();
                if (i + 1) % w == 0 || i + 1 == tags.len() {
                    loop { polls += 1; if count(ch.clone()).await as usize >= base + i + 1 { break; } }
                }
            }
            eprintln!("{m}: release took {:?}, {polls} polls", t0.elapsed());
        },
        "reject_sync" => {
            for t in &tags {
                ch.basic_reject(*t, BasicRejectOptions { requeue: true })
                    .await
                    .unwrap();
                ch.basic_qos(0, BasicQosOptions::default()).await.unwrap();
            }
        }
        "each_desc" => {
            for t in tags.iter().rev() {
                ch.basic_nack(
                    *t,
                    BasicNackOptions {
                        multiple: false,
                        requeue: true,
                    },
                )
                .await
                .unwrap()
            }
        }
        _ => {}
    }
    let _ = ch.close(200, "x".into()).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    ids
}
fn sorted(v: &[String]) -> usize {
    v.windows(2)
        .filter(|w| w[0].parse::<u32>().unwrap() > w[1].parse::<u32>().unwrap())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn order_experiment() {
    let sim = prechat_sim::spawn(Default::default()).await.unwrap();
    let settings = test_settings(&sim, &unique_namespace("order-x"), &[]);
    let app = start(sim, settings, Roles::INGEST).await;
    let q = app.topology.dead_letter_queue();
    for mode in ["count16", "count16", "count32", "count32", "count8", "count16", "count16"] {
        // empty the queue
        let ch = app.broker.channel().await.unwrap();
        ch.queue_purge(q.as_str().into(), Default::default())
            .await
            .unwrap();
        fill(&app, &q, 2000).await;
        let t0 = std::time::Instant::now();
        let first = read(&app, &q, mode).await;
        eprintln!("read+release {:?}", t0.elapsed());
        let second = read(&app, &q, "close").await;
        let third = read(&app, &q, "close").await;
        eprintln!("mode {mode}: first sorted {} len {}, after {mode}: sorted {} len {} head {:?}; after a close: sorted {} head {:?}", sorted(&first), first.len(), sorted(&second), second.len(), &second[..8], sorted(&third), &third[..8]);
    }
    app.cleanup().await;
}
