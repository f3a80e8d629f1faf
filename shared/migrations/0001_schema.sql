-- Payment Queue schema. Money is integer paise everywhere; the constraints below make a
-- double charge, an oversell or a negative balance impossible rather than unlikely.

CREATE TABLE users (
    id          text PRIMARY KEY,              -- the identity provider's subject (JWT "sub")
    email       text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE users IS
    'Shoppers. The id is the JWT subject, so the API never takes a user id from a request body.';

CREATE TABLE wallets (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id        text NOT NULL UNIQUE REFERENCES users (id),
    balance_paise  bigint NOT NULL CHECK (balance_paise >= 0),
    currency       char(3) NOT NULL DEFAULT 'INR',
    updated_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE wallets IS
    'Stored-value balance per user. balance_paise >= 0 is what makes overdrawing impossible; '
    'every change is mirrored by a wallet_transactions row so the ledger can be re-added.';

CREATE TABLE products (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text NOT NULL,
    price_paise  bigint NOT NULL CHECK (price_paise > 0),
    stock        integer NOT NULL CHECK (stock >= 0)
);
COMMENT ON TABLE products IS
    'Catalogue with stock on hand. stock >= 0 is what makes an oversell impossible.';

CREATE TABLE orders (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         text NOT NULL REFERENCES users (id),
    items           jsonb NOT NULL CHECK (jsonb_typeof(items) = 'array' AND jsonb_array_length(items) > 0),
    total_paise     bigint NOT NULL CHECK (total_paise > 0),
    currency        char(3) NOT NULL DEFAULT 'INR',
    order_status    text NOT NULL DEFAULT 'pending'
                    CHECK (order_status IN ('pending', 'paid', 'cancelled')),
    payment_method  text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    paid_at         timestamptz,
    CHECK ((order_status = 'paid') = (paid_at IS NOT NULL))
);
COMMENT ON TABLE orders IS
    'Orders placed by the shop front. items is the JSON the checkout wrote '
    '([{"product_id", "quantity", "unit_price_paise"}]); payment turns it into order_items.';

CREATE TABLE order_items (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id          bigint NOT NULL REFERENCES orders (id),
    product_id        bigint NOT NULL REFERENCES products (id),
    quantity          integer NOT NULL CHECK (quantity > 0),
    unit_price_paise  bigint NOT NULL CHECK (unit_price_paise >= 0),
    UNIQUE (order_id, product_id)
);
COMMENT ON TABLE order_items IS
    'Line items of paid orders, written by the payment transaction from orders.items.';

CREATE TABLE cart_items (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     text NOT NULL REFERENCES users (id),
    product_id  bigint NOT NULL REFERENCES products (id),
    quantity    integer NOT NULL CHECK (quantity > 0),
    UNIQUE (user_id, product_id)
);
COMMENT ON TABLE cart_items IS
    'Shopping carts; the payment transaction removes what the paid order bought.';

CREATE TABLE payment_jobs (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id          text NOT NULL REFERENCES users (id),
    idempotency_key  text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    request_hash     text NOT NULL,
    order_id         bigint NOT NULL REFERENCES orders (id),
    method           text NOT NULL,
    status           text NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'processing', 'succeeded', 'failed')),
    reason           text,
    queue_seq        bigint NOT NULL,
    payment_id       bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    finished_at      timestamptz,
    UNIQUE (user_id, idempotency_key),
    CHECK ((status IN ('succeeded', 'failed')) = (finished_at IS NOT NULL)),
    CHECK ((status = 'failed') = (reason IS NOT NULL)),
    CHECK ((status = 'succeeded') = (payment_id IS NOT NULL))
);
COMMENT ON TABLE payment_jobs IS
    'Every accepted payment request: the queue''s ledger. (user_id, idempotency_key) is unique so a '
    'client retry can never become a second job; sent_at IS NULL marks a job whose queue send '
    'has not been confirmed, which the sweeper re-sends; queue_seq orders jobs for position estimates.';
COMMENT ON COLUMN payment_jobs.request_hash IS
    'SHA-256 of the canonical request body: the same key with a different body is refused.';

CREATE SEQUENCE payment_job_seq;
ALTER TABLE payment_jobs ALTER COLUMN queue_seq SET DEFAULT nextval('payment_job_seq');
COMMENT ON SEQUENCE payment_job_seq IS 'Acceptance order of jobs (position = queue_seq - finished).';

CREATE SEQUENCE payment_finished_seq;
COMMENT ON SEQUENCE payment_finished_seq IS
    'Counts jobs that reached a terminal state. A sequence, not a counter row, so that concurrent '
    'payments never queue on one hot row; read in O(1) to estimate queue positions.';

-- At most one live job per order: a second request for an order already in the queue is refused
-- up front instead of failing later in the worker.
CREATE UNIQUE INDEX payment_jobs_one_live_job_per_order
    ON payment_jobs (order_id) WHERE status IN ('queued', 'processing');
CREATE INDEX payment_jobs_unsent ON payment_jobs (created_at) WHERE sent_at IS NULL;
CREATE INDEX payment_jobs_live ON payment_jobs (created_at) WHERE status IN ('queued', 'processing');
CREATE INDEX payment_jobs_finished_at ON payment_jobs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE wallet_transactions (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    wallet_id            bigint NOT NULL REFERENCES wallets (id),
    order_id             bigint REFERENCES orders (id),
    job_id               uuid REFERENCES payment_jobs (id),
    kind                 text NOT NULL CHECK (kind IN ('debit', 'credit')),
    amount_paise         bigint NOT NULL CHECK (amount_paise > 0),
    balance_after_paise  bigint NOT NULL CHECK (balance_after_paise >= 0),
    note                 text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (order_id, kind)
);
COMMENT ON TABLE wallet_transactions IS
    'Append-only wallet ledger: balance = sum(credits) - sum(debits). UNIQUE (order_id, kind) '
    'means an order can be debited once, whatever the retries.';

CREATE TABLE payment_transactions (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id      bigint NOT NULL UNIQUE REFERENCES orders (id),
    job_id        uuid NOT NULL UNIQUE REFERENCES payment_jobs (id),
    user_id       text NOT NULL REFERENCES users (id),
    method        text NOT NULL,
    amount_paise  bigint NOT NULL CHECK (amount_paise > 0),
    currency      char(3) NOT NULL,
    status        text NOT NULL DEFAULT 'captured' CHECK (status IN ('captured', 'refunded')),
    gateway_ref   text,
    created_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE payment_transactions IS
    'One row per paid order. UNIQUE (order_id) is the constraint that makes a double charge impossible.';

CREATE TABLE outbox_events (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    job_id        uuid NOT NULL REFERENCES payment_jobs (id),
    event_type    text NOT NULL CHECK (event_type IN ('PaymentSucceeded', 'PaymentFailed')),
    payload       jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz,
    UNIQUE (job_id, event_type)
);
COMMENT ON TABLE outbox_events IS
    'Events written in the payment transaction and published after commit; the sweeper re-publishes '
    'rows still unpublished, so a committed payment always gets its notification (at least once; '
    'consumers dedupe on id).';
CREATE INDEX outbox_events_unpublished ON outbox_events (created_at) WHERE published_at IS NULL;

-- The seed's indexes (those not already implied by a unique constraint) and the ones our queries need.
CREATE INDEX idx_orders_user_id ON orders (user_id);
CREATE INDEX idx_orders_status ON orders (order_status);
CREATE INDEX idx_payments_user_id ON payment_transactions (user_id);
CREATE INDEX idx_cart_user_id ON cart_items (user_id);
CREATE INDEX idx_wallet_tx_wallet_id ON wallet_transactions (wallet_id);
CREATE INDEX idx_order_items_order_id ON order_items (order_id);
