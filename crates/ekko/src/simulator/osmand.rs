//! The simulator's OsmAnd side: each report is one HTTP GET with the OsmAnd query parameters
//! (what the Traccar Client app sends), acknowledged by an empty 200.

use std::time::Duration;

use super::{Outcome, Report};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Sends reports to one OsmAnd listener.
pub struct Sender {
    client: reqwest::Client,
    url: String,
}

impl Sender {
    pub fn new(url: &str) -> anyhow::Result<Self> {
        Ok(Sender {
            client: reqwest::Client::builder().timeout(TIMEOUT).build()?,
            url: url.to_owned(),
        })
    }

    /// One request per report, all at once; one outcome per report, in order.
    pub async fn send(&self, reports: &[Report]) -> Vec<Outcome> {
        let sends = reports.iter().map(|r| self.send_one(r));
        futures::future::join_all(sends).await
    }

    async fn send_one(&self, report: &Report) -> Outcome {
        match self
            .client
            .get(&self.url)
            .query(&report.params)
            .send()
            .await
        {
            // An OsmAnd listener acknowledges with an empty 200; a 200 with a body is some
            // other server (e.g. the API port by mistake), which stored nothing.
            Ok(r) if r.status().is_success() => match r.bytes().await {
                Ok(body) if body.is_empty() => Outcome::Acked,
                _ => Outcome::Refused(format!(
                    "{} is not an OsmAnd listener: it answered 200 with a body",
                    self.url
                )),
            },
            Ok(r) if r.status().is_client_error() => {
                let status = r.status();
                let detail = r.text().await.unwrap_or_default();
                Outcome::Refused(format!("{status}: {}", problem_detail(&detail)))
            }
            Ok(r) => Outcome::Failed(format!("the server answered {}", r.status())),
            Err(e) => Outcome::Failed(format!("could not send: {e}")),
        }
    }
}

/// The `detail` of an RFC 9457 problem body (the gateway's error shape), else the body itself,
/// shortened.
pub(crate) fn problem_detail(body: &str) -> String {
    let detail = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("detail").and_then(|d| d.as_str()).map(str::to_owned))
        .unwrap_or_else(|| body.trim().to_owned());
    detail.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_body_gives_its_detail() {
        assert_eq!(
            problem_detail(r#"{"type":"about:blank","status":400,"detail":"unknown device"}"#),
            "unknown device"
        );
        assert_eq!(problem_detail(" plain text \n"), "plain text");
        assert_eq!(problem_detail(&"x".repeat(1000)).len(), 300);
    }
}
