//! RDS: DB instances and DB clusters (Aurora; DocumentDB and Neptune clusters have the
//! same API), for database tiers. `DescribeDBInstances` and `DescribeDBClusters` take
//! no tag filter, so every page is read and the tags each answer carries decide.

use async_trait::async_trait;
use ec2_scheduler_core::db::{DbCluster, DbInstance, DbStatus};
use ec2_scheduler_engine::ports::{ApiResult, Databases};

use crate::{AwsCloud, api_error};

fn tags(list: &[aws_sdk_rds::types::Tag]) -> std::collections::BTreeMap<String, String> {
    list.iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or("").to_string())))
        .collect()
}

fn has_tag(t: &std::collections::BTreeMap<String, String>, key: &str, values: &[String]) -> bool {
    t.get(key).is_some_and(|v| values.contains(v))
}

/// A DB instance as the core knows it.
pub fn db_instance(d: &aws_sdk_rds::types::DbInstance) -> Option<DbInstance> {
    Some(DbInstance {
        id: d.db_instance_identifier()?.to_string(),
        engine: d.engine().unwrap_or_default().to_string(),
        class: d.db_instance_class().unwrap_or_default().to_string(),
        status: DbStatus::parse(d.db_instance_status().unwrap_or("unknown")),
        multi_az: d.multi_az().unwrap_or(false),
        cluster: d.db_cluster_identifier().map(str::to_string),
        replica_of: d
            .read_replica_source_db_instance_identifier()
            .map(str::to_string),
        replicas: d.read_replica_db_instance_identifiers().to_vec(),
        tags: tags(d.tag_list()),
    })
}

/// A DB cluster as the core knows it.
pub fn db_cluster(c: &aws_sdk_rds::types::DbCluster) -> Option<DbCluster> {
    Some(DbCluster {
        id: c.db_cluster_identifier()?.to_string(),
        engine: c.engine().unwrap_or_default().to_string(),
        status: DbStatus::parse(c.status().unwrap_or("unknown")),
        members: c
            .db_cluster_members()
            .iter()
            .filter_map(|m| m.db_instance_identifier().map(str::to_string))
            .collect(),
        tags: tags(c.tag_list()),
    })
}

#[async_trait]
impl Databases for AwsCloud {
    async fn describe_db_instances(
        &self,
        tag_key: &str,
        values: &[String],
    ) -> ApiResult<Vec<DbInstance>> {
        let a = "rds:DescribeDBInstances";
        let mut out = Vec::new();
        let mut pages = self.rds.describe_db_instances().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| api_error(a, &e))?;
            out.extend(
                page.db_instances()
                    .iter()
                    .filter_map(db_instance)
                    .filter(|d| has_tag(&d.tags, tag_key, values)),
            );
        }
        Ok(out)
    }

    async fn describe_db_clusters(
        &self,
        tag_key: &str,
        values: &[String],
    ) -> ApiResult<Vec<DbCluster>> {
        let a = "rds:DescribeDBClusters";
        let mut out = Vec::new();
        let mut pages = self.rds.describe_db_clusters().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| api_error(a, &e))?;
            out.extend(
                page.db_clusters()
                    .iter()
                    .filter_map(db_cluster)
                    .filter(|c| has_tag(&c.tags, tag_key, values)),
            );
        }
        Ok(out)
    }

    async fn start_db_instance(&self, id: &str) -> ApiResult<()> {
        let a = "rds:StartDBInstance";
        self.rds
            .start_db_instance()
            .db_instance_identifier(id)
            .send()
            .await
            .map_err(|e| api_error(a, &e))?;
        Ok(())
    }

    async fn stop_db_instance(&self, id: &str) -> ApiResult<()> {
        let a = "rds:StopDBInstance";
        self.rds
            .stop_db_instance()
            .db_instance_identifier(id)
            .send()
            .await
            .map_err(|e| api_error(a, &e))?;
        Ok(())
    }

    async fn start_db_cluster(&self, id: &str) -> ApiResult<()> {
        let a = "rds:StartDBCluster";
        self.rds
            .start_db_cluster()
            .db_cluster_identifier(id)
            .send()
            .await
            .map_err(|e| api_error(a, &e))?;
        Ok(())
    }

    async fn stop_db_cluster(&self, id: &str) -> ApiResult<()> {
        let a = "rds:StopDBCluster";
        self.rds
            .stop_db_cluster()
            .db_cluster_identifier(id)
            .send()
            .await
            .map_err(|e| api_error(a, &e))?;
        Ok(())
    }
}
