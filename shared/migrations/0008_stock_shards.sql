-- A product's stock split over rows (docs/capacity.md, "The lift"): payments of a sharded product
-- each take their units from one shard, so they commit in parallel instead of one after another
-- behind the product row's lock. A product with no rows here is bought from its own row, as before.
-- Functions: shared/sql/stock_shards.sql.
CREATE TABLE product_stock_shards (
    product_id bigint NOT NULL REFERENCES products (id),
    shard      integer NOT NULL CHECK (shard >= 0),
    stock      integer NOT NULL CHECK (stock >= 0),
    PRIMARY KEY (product_id, shard)
);

COMMENT ON TABLE product_stock_shards IS
    'Stock of a sharded product (products.stock is then 0): units on hand = the sum of its shards. '
    'stock >= 0 on every shard is what makes an oversell impossible, as on products.';
