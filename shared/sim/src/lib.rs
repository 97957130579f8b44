//! Local stand-ins for the systems the sync talks to, all listening on 127.0.0.1 only:
//! protocol-faithful JuShuiTan and Kingdee simulators, the seeded demo data set, and a launcher
//! for moto (DynamoDB and SQS).

pub mod jushuitan;
pub mod kingdee;
pub mod moto;
pub mod seed;
