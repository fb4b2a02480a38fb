//! klft-GetFileInfo and klft-GetNextFileChunk: update files from the updates directory.

use time::OffsetDateTime;

use super::DeviceService;
use crate::error::DeviceError;
use crate::soap::{FileChunk, FileInfo, Response};

impl DeviceService {
    pub(super) async fn get_file_info(
        &self,
        session_id: &str,
        file_name: &str,
        now: OffsetDateTime,
    ) -> Result<Response, DeviceError> {
        let mut session = self.session(session_id, now).await?;
        let meta = self.updates.info(file_name).await?;
        if !meta.is_dir {
            session.downloads.note_info(file_name, meta.identity);
            self.sessions.update(&session).await?;
        }
        Ok(Response::GetFileInfo {
            info: Some(FileInfo {
                file_name: file_name.to_string(),
                is_dir: meta.is_dir,
                read_permission: meta.readable,
                create_time: meta.created,
                full_file_size: meta.size,
            }),
            error: None,
        })
    }

    pub(super) async fn get_next_chunk(
        &self,
        session_id: &str,
        file_name: &str,
        start: u64,
        needed: u64,
        now: OffsetDateTime,
    ) -> Result<Response, DeviceError> {
        let mut session = self.session(session_id, now).await?;
        let chunk = self.updates.chunk(file_name, start, needed).await?;
        let admitted = session.downloads.check(file_name, start, chunk.identity);
        // The guard's memory changes either way (a new version recorded, or a restart demanded).
        self.sessions.update(&session).await?;
        admitted?;
        Ok(Response::GetNextFileChunk {
            chunk: Some(FileChunk {
                file_name: file_name.to_string(),
                crc: chunk.crc,
                start_pos_in_file: chunk.start,
                full_file_size: chunk.full_size,
                buff: chunk.data,
            }),
            error: None,
        })
    }
}
