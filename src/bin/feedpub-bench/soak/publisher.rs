//! The soak's publishers: new articles, corrections, retractions and batches.

use super::{Expected, Plan, Rng, SECTIONS, Tally};
use crate::fixture::Fixture;
use feedpub::grpc::proto::{
    Article, ArticleEventType, PublishArticleRequest, PublishArticlesRequest, RetractArticleRequest,
};
use std::sync::{Arc, Mutex};

/// One publisher: its own article ids, the ones still live with their etags.
pub(super) struct Publisher {
    fixture: Arc<Fixture>,
    tally: Arc<Tally>,
    expected: Arc<Mutex<Expected>>,
    index: usize,
    next: usize,
    live: Vec<(String, String, i32)>,
    rng: Rng,
}

impl Publisher {
    /// Publisher `index`, with nothing published yet.
    pub(super) fn new(
        fixture: Arc<Fixture>,
        tally: Arc<Tally>,
        expected: Arc<Mutex<Expected>>,
        index: usize,
    ) -> Self {
        Self {
            fixture,
            tally,
            expected,
            index,
            next: 0,
            live: Vec::new(),
            rng: Rng(0x9e37_79b9_7f4a_7c15 ^ (index as u64 + 1)),
        }
    }

    /// Acts once a tick until the soak stops.
    pub(super) async fn run(mut self, plan: Plan) {
        let mut ticker = tokio::time::interval(plan.publish_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tick = 0_u64;
        while !self.tally.stopping() {
            ticker.tick().await;
            tick += 1;
            let result = match tick % 20 {
                // Every 20th tick a batch, every 10th (else) a retraction, every 4th a
                // correction, as long as there is something to correct; else a new article.
                0 => self.batch(plan.batch).await,
                10 if self.live.len() > 10 => self.retract().await,
                t if t % 4 == 1 && !self.live.is_empty() => self.correct().await,
                _ => self.publish_new().await,
            };
            if let Err((kind, e)) = result {
                self.tally.error(kind, e);
            }
        }
    }

    fn new_article(&mut self) -> Article {
        let n = self.next;
        self.next += 1;
        let id = format!("soak-{}-{n:06}", self.index);
        let mut article =
            self.fixture
                .article(id, &format!("（{}-{n}）", self.index), n * 7 + self.index);
        article.section = SECTIONS[(n + self.index) % SECTIONS.len()].to_owned();
        article
    }

    fn acknowledged(&self, kind: ArticleEventType) {
        self.expected.lock().expect("expected lock").add(kind);
    }

    async fn publish_new(&mut self) -> Result<(), (&'static str, String)> {
        let article = self.new_article();
        let id = article.id.clone();
        let answer = self
            .fixture
            .client
            .clone()
            .publish_article(PublishArticleRequest {
                article: Some(article),
                request_id: String::new(),
            })
            .await
            .map_err(|s| ("publish", format!("{id}: {s:?}")))?
            .into_inner();
        let stored = answer.article.unwrap_or_default();
        if stored.version != 1 {
            return Err((
                "publish",
                format!("{id}: new article at version {}", stored.version),
            ));
        }
        self.acknowledged(ArticleEventType::Published);
        Tally::bump(&self.tally.published, 1);
        self.live.push((id, stored.etag, stored.version));
        Ok(())
    }

    async fn correct(&mut self) -> Result<(), (&'static str, String)> {
        let at = self.rng.below(self.live.len());
        let (id, etag, version) = self.live[at].clone();
        let n: usize = id
            .rsplit('-')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let mut article = self.fixture.article(
            id.clone(),
            &format!("（更正{}）", version + 1),
            n * 7 + self.index,
        );
        article.section = SECTIONS[(n + self.index) % SECTIONS.len()].to_owned();
        article.etag = etag;
        let answer = self
            .fixture
            .client
            .clone()
            .publish_article(PublishArticleRequest {
                article: Some(article),
                request_id: format!("soak-fix-{id}-{version}"),
            })
            .await
            .map_err(|s| ("correct", format!("{id}: {s:?}")))?
            .into_inner();
        let stored = answer.article.unwrap_or_default();
        if stored.version != version + 1 {
            return Err((
                "correct",
                format!("{id}: version {} after {version}", stored.version),
            ));
        }
        self.acknowledged(ArticleEventType::Updated);
        Tally::bump(&self.tally.corrected, 1);
        self.live[at] = (id, stored.etag, stored.version);
        Ok(())
    }

    async fn retract(&mut self) -> Result<(), (&'static str, String)> {
        // The oldest live article, so the live set stays a window of recent ones.
        let (id, etag, _) = self.live.remove(0);
        let stored = self
            .fixture
            .client
            .clone()
            .retract_article(RetractArticleRequest {
                id: id.clone(),
                reason: "撤稿（浸泡测试）".into(),
                etag,
                request_id: String::new(),
            })
            .await
            .map_err(|s| ("retract", format!("{id}: {s:?}")))?
            .into_inner();
        if stored.state != feedpub::grpc::proto::ArticleState::Retracted as i32 {
            return Err(("retract", format!("{id}: state {} after", stored.state)));
        }
        self.acknowledged(ArticleEventType::Retracted);
        Tally::bump(&self.tally.retracted, 1);
        Ok(())
    }

    async fn batch(&mut self, size: usize) -> Result<(), (&'static str, String)> {
        let articles: Vec<Article> = (0..size).map(|_| self.new_article()).collect();
        let ids: Vec<String> = articles.iter().map(|a| a.id.clone()).collect();
        // Two messages, as a client streaming a larger batch would send them.
        let requests: Vec<PublishArticleRequest> = articles
            .into_iter()
            .map(|a| PublishArticleRequest {
                request_id: format!("soak-batch-{}", a.id),
                article: Some(a),
            })
            .collect();
        let half = requests.len() / 2;
        let (one, two) = requests.split_at(half);
        let messages = vec![
            PublishArticlesRequest {
                requests: one.to_vec(),
            },
            PublishArticlesRequest {
                requests: two.to_vec(),
            },
        ];
        let answer = self
            .fixture
            .client
            .clone()
            .publish_articles(tokio_stream::iter(messages))
            .await
            .map_err(|s| ("batch", format!("{}…: {s:?}", ids[0])))?
            .into_inner();
        if answer.results.len() != ids.len() {
            return Err((
                "batch",
                format!(
                    "{} results for {} articles",
                    answer.results.len(),
                    ids.len()
                ),
            ));
        }
        for (result, id) in answer.results.iter().zip(ids) {
            let ok = result.status.as_ref().is_none_or(|s| s.code == 0);
            if !ok || !result.changed || result.version != 1 || result.id != id {
                self.tally
                    .error("batch", format!("{id}: result {result:?}"));
                continue;
            }
            self.acknowledged(ArticleEventType::Published);
            Tally::bump(&self.tally.batch_articles, 1);
            self.live.push((id, result.etag.clone(), result.version));
        }
        Tally::bump(&self.tally.batches, 1);
        Ok(())
    }
}
