def filter(action, record, changes, metadata) do
  record["customer_type"] == "VIP"
end
