mod mysql_support;
use mysql_async::prelude::Queryable;
use mysql_support::*;
use ordo_config::Snapshot;
#[tokio::test]
async fn idle() {
    tracing_subscriber::fmt()
        .with_env_filter("ordo_capture=debug")
        .init();
    let db = database("ordo_tmp_idle").await;
    let mut c = admin().await;
    c.query_drop(format!("CREATE TABLE `{db}`.t (id INT PRIMARY KEY)"))
        .await
        .unwrap();
    let mut src = start(config("ordo", "ordo", Snapshot::Never, vec![]), &db, None);
    tokio::time::sleep(std::time::Duration::from_secs(27)).await;
    let g = exec(&mut c, &[&format!("INSERT INTO `{db}`.t VALUES (1)")]).await;
    let t = src.events.txns_until("x", |t| *t.commit.id == *g).await;
    eprintln!("got {}", t.len());
    src.shutdown.cancel();
    src.task.await.unwrap().unwrap();
}
