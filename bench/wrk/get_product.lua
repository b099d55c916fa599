-- Reads: GET /product/{id} over the seeded products 1..N.
request = function()
  return wrk.format("GET", "/product/" .. math.random(1, N))
end
