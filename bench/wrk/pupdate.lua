-- Writes: POST /product update of every field of a seeded product (stock stays large).
request = function()
  local id = math.random(1, N)
  return post_json("/product", string.format(
    '{"command":"update","id":%d,"name":"item%d","description":"updated","price":%d.5,"quantity":%d}',
    id, id, math.random(1, 500), math.random(1000000, 2000000)))
end
