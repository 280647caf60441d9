-- Connection errors of agent process instances, with the HTTP answer coderd gave parsed out.
-- The agent logs a failed connection as `run exited with error` (newer: `runLoop exited with
-- error`) and, for instance-identity auth, `failed to exchange session token`; the error text
-- sits in the `error=` field or, when it spans lines, in the entry's trailing block:
--   error= GET https://coder.example.com/api/v2/workspaceagents/me/rpc?version=2.4: unexpected status code 403: Agent trying to connect from non-latest build.
--          	Error: build is outdated
-- http_status is NULL for errors that carry no HTTP answer (EOF, dial errors, timeouts).
CREATE OR REPLACE TABLE agent_connection_errors AS
WITH errs AS (
    SELECT
        stream, process_no, instance_no, file_rank, source, line, ts, level, message,
        concat_ws(chr(10), nullif(fields, ''), block) AS error_text
    FROM agent_key_events
    WHERE kind = 'connection error'  -- includes any entry whose error is an HTTP answer
)
SELECT
    stream, process_no, instance_no, file_rank, source, line, ts, level, message,
    nullif(regexp_extract(error_text, '(GET|POST|PUT|PATCH|DELETE) \S+: unexpected status code', 1), '') AS http_method,
    nullif(regexp_extract(error_text, '(?:GET|POST|PUT|PATCH|DELETE) [a-z]+://[^/\s]+([^?\s:]*)', 1), '') AS endpoint_path,
    TRY_CAST(nullif(regexp_extract(error_text, 'unexpected status code (\d{3})', 1), '') AS INTEGER) AS http_status,
    nullif(trim(regexp_extract(error_text, 'unexpected status code \d{3}: ([^\n\\"]*)', 1)), '') AS http_message,
    nullif(trim(regexp_extract(error_text, 'Error: ([^\n\\"]*)', 1)), '') AS error_detail,
    error_text
FROM errs;
