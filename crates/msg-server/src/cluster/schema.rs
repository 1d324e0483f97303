//! The shared schema: refinery's migrations (`migrations/`), applied by
//! whichever node starts first while the others wait on an advisory lock,
//! so nodes started at once never race to create the same table.

use tokio_postgres::NoTls;

use crate::cluster::ClusterError;

refinery::embed_migrations!("src/cluster/migrations");

/// The advisory lock's key: "msg-srv" in ASCII, so no other program's
/// lock on the same database is likely to collide with it.
const MIGRATION_LOCK: i64 = 0x006d_7367_2d73_7276;

/// Brings the schema up to date, one node at a time.
pub(super) async fn migrate(url: &str) -> Result<(), ClusterError> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| ClusterError::StoreUrl(e.to_string()))?;
    config.connect_timeout(super::DB_WAIT);
    let (mut client, connection) = config.connect(NoTls).await?;
    let driver = tokio::spawn(connection);
    let result = async {
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        let report = migrations::runner()
            .run_async(&mut client)
            .await
            .map_err(|e| ClusterError::Migration(e.to_string()))?;
        for applied in report.applied_migrations() {
            tracing::info!(migration = %applied, "database schema migrated");
        }
        // Also released when the connection closes, whatever happened.
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await?;
        Ok(())
    }
    .await;
    drop(client);
    let _ = driver.await;
    result
}
