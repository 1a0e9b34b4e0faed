"""The earlier pipeline's minute jobs (realtime_pipeline_ht_api.md): stock and futures minute candles, the
option matrix, dolpha1's signals and the expected-candle check, with the store they write to. The jobs are
plain functions over a REST client; `actors.minute_jobs` runs them on the observer's schedule."""
