-- Writes: POST /user create, each with an id never used before.
request = function()
  local id = fresh_id()
  return post_json("/user", string.format(
    '{"command":"create","id":%d,"username":"w%d","email":"w%d@x.org","password":"p%d"}', id, id, id, id))
end
