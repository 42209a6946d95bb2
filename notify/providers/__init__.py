"""Provider clients notify sends through: Aliyun SMS, WeChat messages, merchant webhooks."""
