//! What object_store cannot do for S3: create the bucket. Uses aws-sdk-s3.

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};

use crate::error::{Error, Result};

/// Create `bucket` if it does not exist yet. Errors name the endpoint and what to check.
pub(crate) async fn ensure_bucket(
    bucket: &str,
    endpoint: &Option<String>,
    region: &str,
    key: &Option<String>,
    secret: &Option<String>,
    token: &Option<String>,
) -> Result<()> {
    let mut conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .force_path_style(true);
    if let (Some(k), Some(s)) = (key, secret) {
        conf = conf.credentials_provider(Credentials::new(k, s, token.clone(), None, "strata"));
    }
    if let Some(e) = endpoint {
        conf = conf.endpoint_url(e);
    }
    let client = aws_sdk_s3::Client::from_conf(conf.build());
    let where_ = endpoint.as_deref().unwrap_or("AWS S3");
    match client.head_bucket().bucket(bucket).send().await {
        Ok(_) => return Ok(()),
        Err(e) => {
            let status = e.raw_response().map(|r| r.status().as_u16());
            match status {
                Some(404) => {}
                Some(401 | 403) => {
                    return Err(Error::Config(format!(
                        "access to bucket `{bucket}` at {where_} was refused (HTTP {}); check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY",
                        status.unwrap_or_default()
                    )));
                }
                Some(code) => {
                    return Err(Error::Unavailable(format!(
                        "HEAD bucket `{bucket}` at {where_} answered HTTP {code}"
                    )));
                }
                None => {
                    return Err(Error::Unavailable(format!(
                        "cannot reach the S3 endpoint {where_}: {}; is the server running? (`minio/s3.sh start` starts a local one)",
                        crate::store::one_line(
                            &aws_sdk_s3::error::DisplayErrorContext(&e).to_string()
                        )
                    )));
                }
            }
        }
    }
    match client.create_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(()),
        Err(e) => {
            let svc = e.as_service_error();
            if svc
                .is_some_and(|s| s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists())
            {
                return Ok(());
            }
            Err(Error::Unavailable(format!(
                "cannot create bucket `{bucket}` at {where_}: {}",
                crate::store::one_line(&aws_sdk_s3::error::DisplayErrorContext(&e).to_string())
            )))
        }
    }
}
