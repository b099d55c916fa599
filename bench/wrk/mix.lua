-- A mix: 20 % GET /user, 20 % GET /product, 20 % user creates, 20 % user updates, 20 % product updates.
request = function()
  local r = math.random()
  if r < 0.2 then
    return wrk.format("GET", "/user/" .. math.random(1, N))
  elseif r < 0.4 then
    return wrk.format("GET", "/product/" .. math.random(1, N))
  elseif r < 0.6 then
    local id = fresh_id()
    return post_json("/user", string.format(
      '{"command":"create","id":%d,"username":"w%d","email":"w%d@x.org","password":"p%d"}', id, id, id, id))
  elseif r < 0.8 then
    return post_json("/user", string.format('{"command":"update","id":%d,"email":"u%d@x.org"}',
      math.random(1, N), math.random(1, 1000000)))
  else
    return post_json("/product", string.format('{"command":"update","id":%d,"price":%d.5}',
      math.random(1, N), math.random(1, 500)))
  end
end
