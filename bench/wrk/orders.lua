-- Orders: one unit of a random seeded product for a random seeded user.
-- ORDER_PRODUCT_BASE shifts the product ids (a system seeded elsewhere than 1..N).
local product_base = tonumber(os.getenv("ORDER_PRODUCT_BASE") or "0")
request = function()
  return post_json("/order", string.format(
    '{"command":"place order","user_id":%d,"product_id":%d,"quantity":1}',
    math.random(1, N), product_base + math.random(1, N)))
end
